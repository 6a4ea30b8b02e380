//! The HTTP/1.1 server under `serve`: an accept loop that never ends (an accept error such as
//! EMFILE backs off and tries again), one small thread per connection that reads a request
//! head within fixed limits *while reading* (16 KiB, 100 fields, 10 s from its first byte), a
//! body only with `Content-Length` and at most 16 KiB, and then hands the request to a worker.
//! A response is written with one `write` on a `TCP_NODELAY` socket, so keep-alive clients
//! (Prometheus, browsers) wait for no delayed ACK. Connections are kept alive for HTTP/1.1
//! (unless `Connection: close`) and closed after HTTP/1.0 requests that do not ask otherwise.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// Larger request heads are refused (431) as soon as they pass this size.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// More header fields than this are refused (431).
pub const MAX_FIELDS: usize = 100;
/// Largest request body (a form or JSON for an action); larger ones get 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// A request head (and its body) must arrive within this time of its first byte (408).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that sends no request for this long is closed: the first request and every
/// next one on a kept-alive connection.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Open connections beyond this are closed at once (the file-descriptor limit comes first on
/// most systems: accept then fails and is retried).
pub const MAX_CONNECTIONS: usize = 2000;
/// Each connection's thread only parses and writes: a small stack is enough.
const CONNECTION_STACK: usize = 128 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Other(String),
}

impl Method {
    fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            other => Method::Other(other.to_string()),
        }
    }
}

/// One request, read whole; answered once with [`Request::respond`]. A request dropped
/// without an answer is answered 500, so its client never waits for nothing.
pub struct Request {
    pub method: Method,
    pub url: String,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    keep_alive: bool,
    answer: Option<mpsc::SyncSender<Vec<u8>>>,
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
        let bytes = encode(
            status,
            fields,
            body,
            self.method == Method::Head,
            self.keep_alive,
        );
        if let Some(answer) = self.answer.take() {
            let _ = answer.send(bytes);
        }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some(answer) = self.answer.take() {
            let _ = answer.send(encode(
                500,
                &[("Content-Type", "text/plain; charset=utf-8".into())],
                b"error: the request was not answered\n",
                false,
                false,
            ));
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// The whole response in one buffer, so it leaves in one write.
fn encode(
    status: u16,
    fields: &[(&str, String)],
    body: &[u8],
    head_only: bool,
    keep_alive: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason(status)).as_bytes());
    for (name, value) in fields {
        // A value never carries a line break into the head.
        if value.bytes().any(|b| b == b'\r' || b == b'\n') {
            continue;
        }
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    out.extend_from_slice(if keep_alive {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

fn plain(status: u16, text: &str) -> Vec<u8> {
    encode(
        status,
        &[("Content-Type", "text/plain; charset=utf-8".into())],
        format!("{text}\n").as_bytes(),
        false,
        false,
    )
}

/// Why no request came out of a connection.
#[derive(Debug, PartialEq)]
enum Refused {
    /// The client closed or went quiet before a request began: close without a word.
    Gone,
    /// Answer this (a complete response) and close.
    Answer(u16, &'static str),
}

/// Reads one request head: up to and including the empty line. Stops reading as soon as the
/// head passes [`MAX_HEAD_BYTES`]; waits [`IDLE_TIMEOUT`] for a first byte, then
/// [`HEAD_TIMEOUT`] for the rest.
fn read_head(reader: &mut BufReader<TcpStream>) -> Result<(Vec<u8>, Instant), Refused> {
    let mut head: Vec<u8> = Vec::new();
    let mut deadline = Instant::now() + IDLE_TIMEOUT;
    let mut started: Option<Instant> = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(match started {
                None => Refused::Gone,
                Some(_) => Refused::Answer(408, "the request head did not arrive in time"),
            });
        }
        let _ = reader.get_ref().set_read_timeout(Some(left));
        let available = match reader.fill_buf() {
            Ok([]) => return Err(Refused::Gone),
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return Err(Refused::Gone),
        };
        if started.is_none() {
            // Empty lines before a request are allowed (RFC 9112 2.2); skip them.
            let blank = available
                .iter()
                .take_while(|b| **b == b'\r' || **b == b'\n')
                .count();
            if blank > 0 {
                reader.consume(blank);
                continue;
            }
            let now = Instant::now();
            started = Some(now);
            deadline = now + HEAD_TIMEOUT;
        }
        let from = head.len().saturating_sub(3);
        let room = MAX_HEAD_BYTES + 1 - head.len();
        let take = available.len().min(room);
        let new_at = head.len();
        head.extend_from_slice(&available[..take]);
        // Lines end in CRLF only: a bare LF would make where the head ends depend on how
        // TCP cut the bytes, a door for smuggling (RFC 9112 2.2 allows refusing it).
        if memchr::memchr_iter(b'\n', &head[new_at..])
            .any(|i| new_at + i == 0 || head[new_at + i - 1] != b'\r')
        {
            return Err(Refused::Answer(400, "lines of a request head end in CRLF"));
        }
        let end = memchr::memmem::find(&head[from..], b"\r\n\r\n").map(|i| from + i + 4);
        if let Some(end) = end {
            // Give back what belongs to the body or the next request.
            let used = take - (head.len() - end);
            reader.consume(used);
            head.truncate(end);
            return Ok((head, started.unwrap_or_else(Instant::now)));
        }
        reader.consume(take);
        if head.len() > MAX_HEAD_BYTES {
            return Err(Refused::Answer(431, "request header fields too large"));
        }
    }
}

/// The parts of a request head.
#[derive(Debug)]
struct Head {
    method: Method,
    url: String,
    http11: bool,
    headers: Vec<(String, String)>,
}

fn parse_head(raw: &[u8]) -> Result<Head, Refused> {
    let bad = Refused::Answer(400, "bad request");
    let text = std::str::from_utf8(raw).map_err(|_| Refused::Answer(400, "bad request"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let line = lines.next().ok_or(Refused::Answer(400, "bad request"))?;
    let mut parts = line.split(' ');
    let (Some(method), Some(url), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad);
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    if !token(method) || !url.starts_with('/') || url.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(bad);
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        v if v.starts_with("HTTP/") => {
            return Err(Refused::Answer(
                505,
                "only HTTP/1.0 and HTTP/1.1 are spoken",
            ));
        }
        _ => return Err(bad),
    };
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if headers.len() >= MAX_FIELDS {
            return Err(Refused::Answer(431, "too many header fields"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(Refused::Answer(400, "bad request"));
        };
        // No space before the colon, no folded lines (RFC 9112 5.1, 5.2).
        if !token(name) || value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(Refused::Answer(400, "bad request"));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(Head {
        method: Method::parse(method),
        url: url.to_string(),
        http11,
        headers,
    })
}

/// The body's length: every `Content-Length` field (and every item of a list in one) must be
/// the same run of digits (RFC 9112 6.3): two lengths, a sign or a space would let a client
/// smuggle a second request inside the first one's body.
fn content_length(headers: &[(String, String)]) -> Result<usize, Refused> {
    let bad = Refused::Answer(400, "bad Content-Length");
    let mut length: Option<usize> = None;
    for (_, value) in headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
    {
        for item in value.split(',').map(str::trim) {
            if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad);
            }
            let n = item
                .parse::<usize>()
                .map_err(|_| Refused::Answer(400, "bad Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad);
            }
            length = Some(n);
        }
    }
    Ok(length.unwrap_or(0))
}

/// Whether a comma-separated field (such as `Connection`) holds `token`.
fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Where requests go: actions (`POST /api/actions/…`, which may run for long and wait for
/// the apply lock) have workers of their own, so the page, `/healthz` and `/metrics` never
/// queue behind them.
#[derive(Clone)]
pub struct Lanes {
    pub requests: mpsc::SyncSender<Request>,
    pub actions: mpsc::SyncSender<Request>,
}

impl Lanes {
    fn lane(&self, method: &Method, url: &str) -> &mpsc::SyncSender<Request> {
        match (method, url.starts_with("/api/actions/")) {
            (Method::Post, true) => &self.actions,
            _ => &self.requests,
        }
    }
}

/// Serves one connection until it closes, is idle too long, or breaks the rules.
fn connection(stream: TcpStream, lanes: &Lanes) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(8 * 1024, read_half);
    let mut writer = stream;
    let refuse = |writer: &mut TcpStream, refused: Refused| {
        if let Refused::Answer(status, text) = refused {
            let _ = writer.write_all(&plain(status, text));
            // Let the client read the answer before the close resets the connection.
            let _ = writer.shutdown(std::net::Shutdown::Write);
        }
    };
    loop {
        let (raw, started) = match read_head(&mut reader) {
            Ok(h) => h,
            Err(refused) => return refuse(&mut writer, refused),
        };
        let head = match parse_head(&raw) {
            Ok(h) => h,
            Err(refused) => return refuse(&mut writer, refused),
        };
        let field = |name: &str| {
            head.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        if head.http11 && field("Host").is_none() {
            return refuse(
                &mut writer,
                Refused::Answer(400, "an HTTP/1.1 request needs a Host field"),
            );
        }
        if field("Transfer-Encoding").is_some() {
            return refuse(
                &mut writer,
                Refused::Answer(411, "send the body with a Content-Length"),
            );
        }
        let length = match content_length(&head.headers) {
            Ok(n) => n,
            Err(refused) => return refuse(&mut writer, refused),
        };
        if length > MAX_BODY_BYTES {
            return refuse(
                &mut writer,
                Refused::Answer(413, "the request body is larger than 16 KiB"),
            );
        }
        if length > 0 && head.http11 && has_token(field("Expect"), "100-continue") {
            let _ = writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let mut body = vec![0; length];
        let mut got = 0;
        while got < length {
            let left = (started + HEAD_TIMEOUT).saturating_duration_since(Instant::now());
            if left.is_zero() {
                return refuse(
                    &mut writer,
                    Refused::Answer(408, "the request body did not arrive in time"),
                );
            }
            let _ = reader.get_ref().set_read_timeout(Some(left));
            match reader.read(&mut body[got..]) {
                Ok(0) => return,
                Ok(n) => got += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::WouldBlock | ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        }
        let connection = field("Connection");
        let keep_alive = if head.http11 {
            !has_token(connection, "close")
        } else {
            has_token(connection, "keep-alive")
        };
        let (answer, answered) = mpsc::sync_channel(1);
        let request = Request {
            method: head.method,
            url: head.url,
            headers: head.headers,
            body,
            keep_alive,
            answer: Some(answer),
        };
        let lane = lanes.lane(&request.method, &request.url);
        if lane.send(request).is_err() {
            return refuse(
                &mut writer,
                Refused::Answer(503, "the server is shutting down"),
            );
        }
        let Ok(bytes) = answered.recv() else {
            return;
        };
        if writer.write_all(&bytes).is_err() || !keep_alive {
            let _ = writer.shutdown(std::net::Shutdown::Write);
            return;
        }
    }
}

/// Accepts connections for ever and hands their requests to `jobs`. Never returns: an
/// accept error (EMFILE while descriptors are exhausted) waits a little and tries again,
/// and says so at most every ten seconds.
pub fn accept_loop(listener: &TcpListener, lanes: Lanes) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut said = Instant::now() - Duration::from_secs(60);
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) => {
                if e.kind() != ErrorKind::Interrupted {
                    if said.elapsed() >= Duration::from_secs(10) {
                        eprintln!("serve: cannot accept a connection ({e}); trying again");
                        said = Instant::now();
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                continue;
            }
        };
        if open.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            drop(stream);
            continue;
        }
        open.fetch_add(1, Ordering::SeqCst);
        let guard = OpenGuard(Arc::clone(&open));
        let lanes = lanes.clone();
        let spawned = std::thread::Builder::new()
            .name("serve-conn".into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                let _guard = guard;
                connection(stream, &lanes);
            });
        if spawned.is_err() {
            // No thread (the guard went with the closure and was dropped): back off.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_parsed_strictly() {
        let h = parse_head(b"GET /a?b=c HTTP/1.1\r\nHost: x:1\r\nX-A:  v \r\n\r\n").unwrap();
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.url, "/a?b=c");
        assert!(h.http11);
        assert_eq!(h.headers[1], ("X-A".to_string(), "v".to_string()));
        for bad in [
            &b"GET /a HTTP/1.1 x\r\n\r\n"[..],
            b"GET a HTTP/1.1\r\n\r\n",
            b"GET /a HTTP/1.1\r\nX : y\r\n\r\n",
            b"GET /a HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET /a HTTP/1.1\r\n folded\r\n\r\n",
            b"G\xffT /a HTTP/1.1\r\n\r\n",
            b"GET /a HTTP/1.1\r\nX-A: b\x1b[2Jc\r\n\r\n",
        ] {
            assert_eq!(
                parse_head(bad).err(),
                Some(Refused::Answer(400, "bad request")),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let cl = |fields: &[(&str, &str)]| {
            let h: Vec<(String, String)> = fields
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            content_length(&h)
        };
        assert_eq!(cl(&[]), Ok(0));
        assert_eq!(cl(&[("Content-Length", "12")]), Ok(12));
        assert_eq!(
            cl(&[("content-length", "5"), ("Content-Length", "5")]),
            Ok(5)
        );
        for bad in [
            &[("Content-Length", "0"), ("Content-Length", "120")][..],
            &[("Content-Length", "+5")],
            &[("Content-Length", "0, 120")],
            &[("Content-Length", "")],
            &[("Content-Length", "-1")],
            &[("Content-Length", "0x10")],
        ] {
            assert_eq!(
                cl(bad),
                Err(Refused::Answer(400, "bad Content-Length")),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_head(b"GET / HTTP/2.0\r\n\r\n"),
            Err(Refused::Answer(505, _))
        ));
        let many: String = (0..=MAX_FIELDS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert!(matches!(
            parse_head(format!("GET / HTTP/1.0\r\n{many}\r\n").as_bytes()),
            Err(Refused::Answer(431, _))
        ));
    }

    #[test]
    fn a_response_is_one_buffer_and_head_keeps_the_length() {
        let r = encode(200, &[("X-A", "b".into())], b"hello", true, true);
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "HTTP/1.1 200 OK\r\nX-A: b\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n"
        );
        // A field value with a line break is left out, not split into two fields.
        let r = encode(
            200,
            &[("X-A", "b\r\nSet-Cookie: x".into())],
            b"",
            false,
            false,
        );
        assert!(!String::from_utf8(r).unwrap().contains("Set-Cookie"));
        assert!(has_token(Some("keep-alive, Upgrade"), "upgrade"));
        assert!(!has_token(Some("keep-alive"), "close"));
    }
}
