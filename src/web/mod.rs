//! `ops-run serve`: the read-only status page, `/api/*`, `/metrics` and `/healthz` on
//! tiny_http. Several workers share the server; when tiny_http's accept loop dies (its first
//! accept error, such as EMFILE, ends it for good) a worker notices and rebuilds the server on
//! the same address. Everything shown is computed from SQLite and the files on each request.

pub mod actions;
pub mod auth;
pub mod metrics;
pub mod page;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::json;
use tiny_http::{Header, Method, Request, Response, Server};

use crate::app::App;
use crate::error::Failure;
use crate::plan::compile::Compiled;
use crate::store::Store;
use crate::store::activities::Filter;
use crate::store::kinds::{ActivityStatus, ActivityType};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9180";
const WORKERS: usize = 4;
/// Larger request heads are refused (431): nothing here needs more.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
const STYLE: &str = include_str!("../../templates/static/style.css");

struct Shared {
    server: RwLock<Arc<Server>>,
    generation: AtomicU64,
    addr: String,
    /// Our own handle on the listening socket: when tiny_http's accept loop dies and drops its
    /// copy, the socket stays open, so no other program can take the port in between and
    /// connections waiting in the backlog are served by the next loop.
    listener: std::net::TcpListener,
    /// When the server was last rebuilt and whether that was said: while file descriptors
    /// stay exhausted, rebuilds back off and the log is not flooded.
    last_rebuild: std::sync::Mutex<(std::time::Instant, std::time::Instant)>,
}

impl Shared {
    fn current(&self) -> (Arc<Server>, u64) {
        let s = self
            .server
            .read()
            .map(|s| Arc::clone(&s))
            .unwrap_or_else(|e| Arc::clone(&e.into_inner()));
        (s, self.generation.load(Ordering::SeqCst))
    }

    /// Replaces a server whose accept loop ended; the first worker to notice does it.
    fn rebuild(&self, seen: u64) {
        let Ok(mut slot) = self.server.write() else {
            return;
        };
        if self.generation.load(Ordering::SeqCst) != seen {
            return;
        }
        let now = std::time::Instant::now();
        let (last, said) = self.last_rebuild.lock().map(|g| *g).unwrap_or((now, now));
        // Rebuilt less than a second ago: accept keeps failing (EMFILE); give it time.
        if now.duration_since(last) < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut pause = Duration::from_millis(50);
        loop {
            let server = self
                .listener
                .try_clone()
                .map_err(|e| e.to_string())
                .and_then(|l| Server::from_listener(l, None).map_err(|e| e.to_string()));
            match server {
                Ok(s) => {
                    *slot = Arc::new(s);
                    self.generation.fetch_add(1, Ordering::SeqCst);
                    let now = std::time::Instant::now();
                    let mut said = said;
                    if now.duration_since(said) >= Duration::from_secs(10) || said == last {
                        eprintln!(
                            "serve: the accept loop stopped (too many open files?); listening again on {}",
                            self.addr
                        );
                        said = now;
                    }
                    if let Ok(mut g) = self.last_rebuild.lock() {
                        *g = (now, said);
                    }
                    return;
                }
                Err(_) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

/// What a worker needs to answer: the plans (loaded once), the tokens, its own store
/// connection.
pub struct Site<'a> {
    pub app: &'a App,
    pub compiled: &'a Compiled,
    pub store: Store,
    pub tokens: &'a auth::Tokens,
    /// How long an action waits for a running apply's lock before answering 409.
    pub action_wait: Duration,
}

/// Largest form or JSON body an action may carry.
const MAX_BODY_BYTES: usize = 16 * 1024;

pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub extra: Vec<(&'static str, String)>,
}

impl Reply {
    fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type,
            body: body.into(),
            extra: Vec::new(),
        }
    }

    pub(crate) fn text(status: u16, body: &str) -> Reply {
        Reply::new(status, "text/plain; charset=utf-8", format!("{body}\n"))
    }

    pub(crate) fn json(v: &serde_json::Value) -> Reply {
        Reply::new(
            200,
            "application/json",
            serde_json::to_vec_pretty(v).unwrap_or_default(),
        )
    }
}

/// `?a=b&c=d`, percent-decoded.
pub fn query(url: &str) -> Vec<(String, String)> {
    let Some((_, q)) = url.split_once('?') else {
        return Vec::new();
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// A query component: `+` is a space, `%XX` a byte; invalid UTF-8 is replaced.
fn decode(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// The activity filter of `/api/activities` and the page: `limit` (≤ 500), `before` (an id),
/// `type`, `status`, `plan`.
/// The activity filters of a query string; an unknown type or status is an error (a 400), not
/// an empty list or an unfiltered one.
pub fn activity_filter(q: &[(String, String)], default_limit: usize) -> Result<Filter, String> {
    let get = |k: &str| {
        q.iter()
            .find(|(n, v)| n == k && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    Ok(Filter {
        limit: get("limit")
            .and_then(|v| v.parse().ok())
            .unwrap_or(default_limit)
            .clamp(1, 500),
        kind: get("type").map(|v| ActivityType::parse(&v)).transpose()?,
        status: get("status")
            .map(|v| ActivityStatus::parse(&v))
            .transpose()?,
        plan: get("plan"),
        before_id: get("before").and_then(|v| v.parse().ok()),
    })
}

/// Routes one read request (GET and HEAD; POST is for actions, see `respond`).
pub fn route(site: &Site, method: &Method, url: &str, token: Option<&auth::Token>) -> Reply {
    if !matches!(method, Method::Get | Method::Head) {
        let mut r = Reply::text(
            405,
            "method not allowed: only actions (POST /api/actions/STEP) change anything",
        );
        r.extra.push(("Allow", "GET, HEAD".into()));
        return r;
    }
    let path = url.split('?').next().unwrap_or("/");
    let result = match path {
        "/healthz" => Ok(Reply::text(200, "ok")),
        "/static/style.css" => Ok(Reply::new(200, "text/css; charset=utf-8", STYLE)),
        "/" => page::render(site, &query(url), token)
            .map(|html| Reply::new(200, "text/html; charset=utf-8", html)),
        "/api/status" => {
            crate::facts::checks(site.compiled, Some(&site.store), site.app.clock.now())
                .map(|checks| {
                    Reply::json(&crate::commands::status::to_json(
                        &checks,
                        site.app.clock.now(),
                    ))
                })
                .map_err(|e| e.to_string())
        }
        "/api/activities" => match activity_filter(&query(url), 50) {
            Err(e) => Ok(Reply::text(400, &e)),
            Ok(filter) => site
                .store
                .list(&filter)
                .map(|rows| Reply::json(&json!(rows)))
                .map_err(|e| e.to_string()),
        },
        "/metrics" => crate::facts::checks(site.compiled, Some(&site.store), site.app.clock.now())
            .and_then(|checks| metrics::render(site.compiled, &site.store, &checks))
            .map(|text| Reply::new(200, "text/plain; version=0.0.4; charset=utf-8", text))
            .map_err(|e| e.to_string()),
        _ => Ok(Reply::text(404, "not found")),
    };
    result.unwrap_or_else(|e| Reply::text(500, &format!("error: {e}")))
}

fn header<'r>(request: &'r Request, name: &'static str) -> Option<&'r str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

fn unauthorized() -> Reply {
    let mut r = Reply::text(
        401,
        "authentication required: a token as Bearer or as the Basic password",
    );
    r.extra.push((
        "WWW-Authenticate",
        "Basic realm=\"ops-run\", charset=\"UTF-8\"".into(),
    ));
    r
}

/// Sends a reply with the security headers every response carries.
pub(crate) fn send(request: Request, method: &Method, reply: Reply) {
    let body = if *method == Method::Head {
        Vec::new()
    } else {
        reply.body
    };
    let mut response = Response::from_data(body).with_status_code(reply.status);
    let mut headers: Vec<(&str, String)> = vec![
        ("Content-Type", reply.content_type.to_string()),
        (
            "Content-Security-Policy",
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'".into(),
        ),
        ("X-Content-Type-Options", "nosniff".into()),
        ("X-Frame-Options", "DENY".into()),
        ("Referrer-Policy", "no-referrer".into()),
        ("Cache-Control", "no-store".into()),
    ];
    headers.extend(reply.extra);
    for (k, v) in headers {
        if let Ok(h) = Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            response.add_header(h);
        }
    }
    let _ = request.respond(response);
}

fn respond(site: &Site, mut request: Request) {
    let head_bytes: usize = request.url().len()
        + request
            .headers()
            .iter()
            .map(|h| h.field.as_str().as_str().len() + h.value.as_str().len() + 4)
            .sum::<usize>();
    let method = request.method().clone();
    if head_bytes > MAX_HEAD_BYTES {
        return send(
            request,
            &method,
            Reply::text(431, "request header fields too large"),
        );
    }
    let url = request.url().to_string();
    let path = url.split('?').next().unwrap_or("/").to_string();
    let open = matches!(path.as_str(), "/healthz" | "/static/style.css");
    let token = site
        .tokens
        .authenticate(header(&request, "Authorization"))
        .cloned();
    // With tokens configured, everything but /healthz needs a token (ops.view to read).
    if site.tokens.configured() && !open {
        match &token {
            None => return send(request, &method, unauthorized()),
            Some(t) if method != Method::Post && !t.grants("ops.view") => {
                return send(
                    request,
                    &method,
                    Reply::text(403, "this token may not view"),
                );
            }
            _ => {}
        }
    }
    if method == Method::Post
        && let Some(step_name) = path.strip_prefix("/api/actions/")
    {
        let step_name = decode(step_name);
        let Some(token) = token else {
            let reply = if site.tokens.configured() {
                unauthorized()
            } else {
                Reply::text(
                    403,
                    "actions are off: no token is configured in any plan's serve block",
                )
            };
            return send(request, &method, reply);
        };
        let Ok(step) = site.compiled.find(&step_name) else {
            return send(
                request,
                &method,
                Reply::text(404, &format!("no step `{step_name}`")),
            );
        };
        let is_release = matches!(
            site.compiled.steps[step].decl.kind,
            crate::plan::model::StepKind::GitTag(_)
        );
        let needed = if is_release {
            "ops.release"
        } else {
            "ops.execute"
        };
        if !token.grants(needed) {
            return send(
                request,
                &method,
                Reply::text(403, &format!("this token does not hold {needed}")),
            );
        }
        // Cross-site requests are refused: a browser says where a form came from.
        let host = header(&request, "Host").unwrap_or_default().to_string();
        if let Some(origin) = header(&request, "Origin")
            && origin != format!("http://{host}")
            && origin != format!("https://{host}")
        {
            return send(
                request,
                &method,
                Reply::text(403, "cross-site request refused"),
            );
        }
        let form = header(&request, "Content-Type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        if form {
            let mut body = Vec::new();
            let _ = std::io::Read::read_to_end(
                &mut std::io::Read::take(request.as_reader(), MAX_BODY_BYTES as u64 + 1),
                &mut body,
            );
            let fields = query(&format!("?{}", String::from_utf8_lossy(&body)));
            let sent = fields
                .iter()
                .find(|(k, _)| k == "csrf")
                .map(|(_, v)| v.as_str())
                .unwrap_or_default();
            if body.len() > MAX_BODY_BYTES
                || !site
                    .tokens
                    .form_key(&token)
                    .is_some_and(|key| auth::constant_time_eq(sent.as_bytes(), key.as_bytes()))
            {
                return send(
                    request,
                    &method,
                    Reply::text(403, "the form's anti-forgery field is missing or wrong"),
                );
            }
        }
        return actions::run(site, request, step, &token.name, form);
    }
    let reply = route(site, &method, &url, token.as_ref());
    send(request, &method, reply)
}

/// Whether the server at `addr` answers `GET /healthz` within a second.
fn alive(addr: &str) -> bool {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let Some(target) = addr.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return true;
    };
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

/// Runs the server until the process is stopped.
pub fn serve(app: &App, listen: Option<&str>, action_wait: Duration) -> Result<(), Failure> {
    let (_loaded, compiled) = app.load()?;
    let tokens = auth::Tokens::load(app, &compiled);
    let addr = listen
        .map(str::to_string)
        .or_else(|| {
            compiled.plans.iter().find_map(|p| {
                p.decl
                    .serve
                    .as_ref()?
                    .listen
                    .as_ref()
                    .map(|l| l.value.clone())
            })
        })
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    // The store exists before the first request, so workers can open it. A user who may
    // only read it serves the page read-only (actions then cannot be recorded).
    if let Err(e) = app.open_store() {
        app.open_reader()?.ok_or(e)?;
    }
    let cannot = |e: String| Failure::Runtime(format!("cannot listen on {addr}: {e}"));
    let listener = std::net::TcpListener::bind(&addr).map_err(|e| cannot(e.to_string()))?;
    let server = listener
        .try_clone()
        .map_err(|e| e.to_string())
        .and_then(|l| Server::from_listener(l, None).map_err(|e| e.to_string()))
        .map_err(cannot)?;
    eprintln!("serve: listening on http://{addr}");
    let shared = Arc::new(Shared {
        server: RwLock::new(Arc::new(server)),
        generation: AtomicU64::new(0),
        addr,
        listener,
        last_rebuild: std::sync::Mutex::new((
            std::time::Instant::now() - Duration::from_secs(60),
            std::time::Instant::now() - Duration::from_secs(60),
        )),
    });
    std::thread::scope(|scope| {
        // The watchdog: tiny_http's accept loop can also die without telling anyone (it
        // panics when it cannot duplicate an accepted socket). Ask /healthz over loopback;
        // two failures in a row mean nobody is accepting, and the server is rebuilt.
        let watched = Arc::clone(&shared);
        scope.spawn(move || {
            let mut failures = 0;
            loop {
                std::thread::sleep(Duration::from_millis(500));
                if alive(&watched.addr) {
                    failures = 0;
                    continue;
                }
                failures += 1;
                if failures >= 2 {
                    let (_, generation) = watched.current();
                    watched.rebuild(generation);
                    failures = 0;
                }
            }
        });
        for _ in 0..WORKERS {
            let shared = Arc::clone(&shared);
            let compiled = &compiled;
            let tokens = &tokens;
            scope.spawn(move || {
                let now = crate::clock::stamp(app.clock.now());
                let store = match Store::open(&app.state.value, &now) {
                    Ok(s) => s,
                    Err(e) => match Store::open_reader(&app.state.value, &now) {
                        Ok(Some(s)) => s,
                        _ => {
                            eprintln!("serve: {e}");
                            return;
                        }
                    },
                };
                // A small page cache per worker keeps serve's memory flat (four workers).
                let _ = store.limit_cache(1024);
                let site = Site {
                    app,
                    compiled,
                    store,
                    tokens,
                    action_wait,
                };
                loop {
                    let (server, generation) = shared.current();
                    match server.recv_timeout(Duration::from_secs(1)) {
                        Ok(Some(request)) => respond(&site, request),
                        Ok(None) => {}
                        Err(_) => shared.rebuild(generation),
                    }
                }
            });
        }
    });
    Ok(())
}
