//! `ops-run serve`: the read-only status page, `/api/*`, `/metrics` and `/healthz`. The HTTP
//! server (`http.rs`) reads requests within fixed limits and hands them to a few workers, each
//! with its own store connection. Everything shown is computed from SQLite and the files on
//! each request.

pub mod actions;
pub mod auth;
pub mod http;
pub mod metrics;
pub mod page;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::activity::{ActivityStatus, ActivityType, UnknownWord};
use crate::app::App;
use crate::error::Failure;
use crate::plan::compile::Compiled;
use crate::store::Store;
use crate::store::activities::Filter;
pub use http::{MAX_BODY_BYTES, MAX_HEAD_BYTES, Method, Request};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9180";
const WORKERS: usize = 4;
/// Workers for actions only: two actions may run (or wait for the lock) at once.
const ACTION_WORKERS: usize = 2;
const STYLE: &str = include_str!("../../templates/static/style.css");

/// The names a request may call this server by (its `Host`), so a page on another site that
/// rebinds its own name to this address (DNS rebinding) cannot read or act: IP addresses,
/// `localhost` and `*.localhost`, this machine's host name, and the plans' `allowed-hosts`.
#[derive(Clone, Debug, Default)]
pub struct Hosts {
    names: Vec<String>,
    any: bool,
}

impl Hosts {
    pub fn new(compiled: &Compiled) -> Hosts {
        let mut names: Vec<String> = compiled
            .plans
            .iter()
            .filter_map(|p| p.decl.serve.as_ref())
            .flat_map(|s| s.allowed_hosts.iter().map(|h| h.value.to_ascii_lowercase()))
            .collect();
        names.extend(crate::app::host_name().map(|h| h.to_ascii_lowercase()));
        Hosts {
            any: names.iter().any(|n| n == "*"),
            names,
        }
    }

    /// Whether `host` (a `Host` field: a name or address, perhaps with a port) is ours.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim();
        if self.any || host.starts_with('[') {
            // `[::1]:9180`: an address; a browser never sends another site's name that way.
            return true;
        }
        let name = match host.rsplit_once(':') {
            Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => host,
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name.parse::<std::net::Ipv4Addr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
        {
            return true;
        }
        self.names.iter().any(|n| match n.strip_prefix("*.") {
            Some(domain) => name.ends_with(&format!(".{domain}")),
            None => *n == name,
        })
    }
}

/// What a worker needs to answer a request: the plans as they stand (the last that loaded,
/// and why the files on disk do not, if they do not), the tokens, its own store connection.
pub struct Site<'a> {
    pub app: &'a App,
    pub compiled: &'a Compiled,
    /// The `ops-run/plans` check when the plan files changed and no longer load.
    pub broken: Option<&'a crate::health::Check>,
    /// The background evaluation, when `serve` runs one.
    pub evaluated: Option<&'a std::sync::RwLock<Option<Evaluated>>>,
    pub hosts: &'a Hosts,
    pub store: &'a Store,
    pub tokens: &'a auth::Tokens,
    /// How long an action waits for a running apply's lock before answering 409.
    pub action_wait: Duration,
}

impl Site<'_> {
    /// The health checks: the background evaluation's (off the request path, fresh within a
    /// fraction of a second of a change on disk or in the log), else computed here; when the
    /// plans no longer load, the `ops-run/plans` check says so (critical) while the cards keep
    /// the last plans that did.
    pub fn checks(&self) -> rusqlite::Result<Vec<crate::health::Check>> {
        let cached = self
            .evaluated
            .and_then(|e| e.read().ok().and_then(|e| e.clone()))
            .filter(|e| std::ptr::eq(Arc::as_ptr(&e.compiled), self.compiled));
        let mut checks = match cached {
            Some(e) => e.checks.as_ref().clone(),
            None => crate::facts::checks(self.compiled, Some(self.store), self.app.clock.now())?,
        };
        if let Some(b) = self.broken {
            for c in checks.iter_mut().filter(|c| c.id == b.id) {
                *c = b.clone();
            }
        }
        Ok(checks)
    }
}

/// The newest background evaluation: its checks, and the plans they are of.
#[derive(Clone)]
pub struct Evaluated {
    compiled: Arc<Compiled>,
    checks: Arc<Vec<crate::health::Check>>,
}

/// What a change to the checks' inputs changes: the state database and its log, and the
/// folders of every dump and snapshot step (their modification times and sizes).
fn inputs(app: &App, compiled: &Compiled) -> Vec<(u64, Option<std::time::SystemTime>)> {
    let stat = |p: &std::path::Path| {
        let m = std::fs::metadata(p).ok();
        (
            m.as_ref().map_or(0, |m| m.len()),
            m.and_then(|m| m.modified().ok()),
        )
    };
    let mut wal = app.state.value.as_os_str().to_owned();
    wal.push("-wal");
    let mut out = vec![stat(&app.state.value), stat(std::path::Path::new(&wal))];
    for s in &compiled.steps {
        let plan = &compiled.plans[s.plan];
        for area in [
            crate::artifact::layout::Area::Dumps,
            crate::artifact::layout::Area::Snapshots,
        ] {
            out.push(stat(&plan.dir(s.name(), area)));
        }
    }
    out
}

/// How often the background evaluation looks for a change, and how old it may get anyway
/// (ages move on without any change).
const LOOK: Duration = Duration::from_millis(250);
const REFRESH: Duration = Duration::from_secs(10);

/// Evaluates health in the background whenever its inputs change (and every `REFRESH`), so
/// the page and `/metrics` never wait behind a recomputation.
fn evaluate_in_background(
    app: &App,
    live: &std::sync::RwLock<Arc<Live>>,
    evaluated: &std::sync::RwLock<Option<Evaluated>>,
) {
    let now = crate::clock::stamp(app.clock.now());
    let store = match Store::open(&app.state.value, &now)
        .ok()
        .or_else(|| Store::open_reader(&app.state.value, &now).ok().flatten())
    {
        Some(s) => s,
        None => return,
    };
    type Inputs = Vec<(u64, Option<std::time::SystemTime>)>;
    let mut seen: Option<(*const Compiled, Inputs)> = None;
    let mut at = std::time::Instant::now();
    loop {
        let current = match live.read() {
            Ok(l) => Arc::clone(&l),
            Err(p) => Arc::clone(&p.into_inner()),
        };
        let compiled: &Compiled = &current.compiled;
        let fingerprint = (compiled as *const Compiled, inputs(app, compiled));
        let changed = seen.as_ref() != Some(&fingerprint);
        if changed || at.elapsed() >= REFRESH {
            if let Ok(checks) = crate::facts::checks(compiled, Some(&store), app.clock.now())
                && let Ok(mut e) = evaluated.write()
            {
                *e = Some(Evaluated {
                    compiled: Arc::clone(&current.compiled),
                    checks: Arc::new(checks),
                });
            }
            seen = Some(fingerprint);
            at = std::time::Instant::now();
        }
        drop(current);
        std::thread::sleep(LOOK);
    }
}

/// The plans `serve` answers with: reloaded when a plan file changes (looked at every few
/// seconds, never per request); when they stop loading, the last good ones stay, with why.
pub struct Live {
    pub compiled: Arc<Compiled>,
    pub broken: Option<crate::health::Check>,
}

/// How often `serve` looks at the plan files.
const WATCH: Duration = Duration::from_secs(2);

/// The plan files' names, sizes and modification times: what a change changes.
fn fingerprint(
    plans: &std::path::Path,
) -> Vec<(std::path::PathBuf, u64, Option<std::time::SystemTime>)> {
    let files: Vec<std::path::PathBuf> = match std::fs::read_dir(plans) {
        Ok(d) => d
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "kdl"))
            .collect(),
        Err(_) => vec![plans.to_path_buf()],
    };
    let mut out: Vec<_> = files
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(&p).ok();
            let len = m.as_ref().map_or(0, |m| m.len());
            let at = m.and_then(|m| m.modified().ok());
            (p, len, at)
        })
        .collect();
    out.sort();
    out
}

/// Reloads the plans into `live` whenever their files change.
fn watch(app: &App, live: &std::sync::RwLock<Arc<Live>>) {
    let mut seen = fingerprint(&app.plans);
    loop {
        std::thread::sleep(WATCH);
        let now = fingerprint(&app.plans);
        if now == seen {
            continue;
        }
        seen = now;
        let next = match app.load_or_check() {
            Ok((_loaded, compiled)) => {
                eprintln!("serve: the plans changed and were loaded again");
                Live {
                    compiled: Arc::new(compiled),
                    broken: None,
                }
            }
            Err(broken) => {
                let (failure, check) = *broken;
                eprintln!(
                    "serve: the plans changed and no longer load:\n{}",
                    failure.message().trim_end()
                );
                let (Some(check), Ok(current)) = (check, live.read().map(|l| Arc::clone(&l)))
                else {
                    continue;
                };
                // The last good plans stay for the cards.
                Live {
                    compiled: Arc::clone(&current.compiled),
                    broken: Some(check),
                }
            }
        };
        if let Ok(mut l) = live.write() {
            *l = Arc::new(next);
        }
    }
}

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

/// Why the page or the metrics could not be made.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// A filter the reader can correct (400).
    #[error(transparent)]
    Filter(#[from] UnknownWord),
    #[error("cannot read the activity log: {0}")]
    Store(#[from] rusqlite::Error),
    #[error(transparent)]
    Help(#[from] crate::help::HelpError),
    #[error("the page does not render: {0}")]
    Render(#[from] handlebars::RenderError),
    #[error("{path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl WebError {
    /// The reply to a reader: 400 for what they can correct, 500 for the rest.
    fn reply(&self) -> Reply {
        match self {
            WebError::Filter(e) => Reply::text(400, &e.to_string()),
            other => Reply::text(500, &format!("error: {other}")),
        }
    }
}

/// The activity filter of `/api/activities` and the page: `limit` (≤ 500), `before` (an id),
/// `type`, `status`, `plan`.
/// The activity filters of a query string; an unknown type or status is an error (a 400), not
/// an empty list or an unfiltered one.
pub fn activity_filter(
    q: &[(String, String)],
    default_limit: usize,
) -> Result<Filter, UnknownWord> {
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
        "/api/status" => site
            .checks()
            .map(|checks| {
                Reply::json(&crate::commands::status::to_json(
                    &checks,
                    site.app.clock.now(),
                ))
            })
            .map_err(WebError::from),
        "/api/activities" => activity_filter(&query(url), 50)
            .map_err(WebError::from)
            .and_then(|filter| Ok(site.store.list(&filter)?))
            .map(|rows| Reply::json(&json!(rows))),
        "/metrics" => site
            .checks()
            .and_then(|checks| metrics::render(site.compiled, site.store, &checks))
            .map(|text| Reply::new(200, "text/plain; version=0.0.4; charset=utf-8", text))
            .map_err(WebError::from),
        _ => Ok(Reply::text(404, "not found")),
    };
    result.unwrap_or_else(|e| e.reply())
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
pub(crate) fn send(request: Request, reply: Reply) {
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
    request.respond(reply.status, &headers, &reply.body);
}

fn respond(site: &Site, request: Request) {
    let method = request.method.clone();
    let url = request.url.clone();
    let path = url.split('?').next().unwrap_or("/").to_string();
    let open = matches!(path.as_str(), "/healthz" | "/static/style.css");
    if let Some(host) = request.header("Host")
        && path != "/healthz"
        && !site.hosts.allows(host)
    {
        let text = format!(
            "this server does not answer to the name `{}`: add it to the plan's `serve {{ allowed-hosts \"…\" }}`",
            host.chars()
                .filter(|c| !c.is_control())
                .take(100)
                .collect::<String>()
        );
        return send(request, Reply::text(421, &text));
    }
    let token = site
        .tokens
        .authenticate(request.header("Authorization"))
        .cloned();
    // With tokens configured, everything but /healthz needs a token (ops.view to read).
    if site.tokens.configured() && !open {
        match &token {
            None => return send(request, unauthorized()),
            Some(t) if method != Method::Post && !t.grants("ops.view") => {
                return send(request, Reply::text(403, "this token may not view"));
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
            return send(request, reply);
        };
        let Ok(step) = site.compiled.find(&step_name) else {
            return send(request, Reply::text(404, &format!("no step `{step_name}`")));
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
                Reply::text(403, &format!("this token does not hold {needed}")),
            );
        }
        // Cross-site requests are refused: a browser says where a form came from.
        let host = request.header("Host").unwrap_or_default().to_string();
        if let Some(origin) = request.header("Origin")
            && origin != format!("http://{host}")
            && origin != format!("https://{host}")
        {
            return send(request, Reply::text(403, "cross-site request refused"));
        }
        let form = request
            .header("Content-Type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        // A browser sends remembered Basic credentials with any cross-site POST (a
        // `text/plain` or `multipart/form-data` one needs no preflight and may carry no
        // `Origin`), but it never adds a Bearer token by itself. So an action with Basic
        // credentials must be the page's own form with its anti-forgery field.
        let bearer = request
            .header("Authorization")
            .is_some_and(|a| a.trim_start().starts_with("Bearer "));
        if !bearer && !form {
            return send(
                request,
                Reply::text(
                    403,
                    "an action with Basic credentials must come from the page's form; API clients send `Authorization: Bearer TOKEN`",
                ),
            );
        }
        if form {
            let fields = query(&format!("?{}", String::from_utf8_lossy(&request.body)));
            let sent = fields
                .iter()
                .find(|(k, _)| k == "csrf")
                .map(|(_, v)| v.as_str())
                .unwrap_or_default();
            if !site
                .tokens
                .form_key(&token)
                .is_some_and(|key| auth::constant_time_eq(sent.as_bytes(), key.as_bytes()))
            {
                return send(
                    request,
                    Reply::text(403, "the form's anti-forgery field is missing or wrong"),
                );
            }
        }
        return actions::run(site, request, step, &token.name, form);
    }
    let reply = route(site, &method, &url, token.as_ref());
    send(request, reply)
}

/// Runs the server until the process is stopped.
pub fn serve(
    app: &App,
    listen: Option<&str>,
    action_wait: Duration,
    alert_every: Duration,
) -> Result<(), Failure> {
    let (_loaded, compiled) = app.load()?;
    let compiled = Arc::new(compiled);
    let tokens = auth::Tokens::load(app, &compiled);
    let hosts = Hosts::new(&compiled);
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
    let serve_setting = |get: fn(&crate::plan::model::Serve) -> Option<u64>| {
        compiled
            .plans
            .iter()
            .find_map(|p| p.decl.serve.as_ref().and_then(get))
    };
    let defaults = http::Limits::default();
    let limits = http::Limits {
        peer_connections: serve_setting(|s| s.max_connections_per_peer.as_ref().map(|v| v.value))
            .map_or(defaults.peer_connections, |v| v as usize),
        max_connections: serve_setting(|s| s.max_connections.as_ref().map(|v| v.value))
            .map_or(defaults.max_connections, |v| v as usize),
    };
    let listener = std::net::TcpListener::bind(&addr)
        .map_err(|e| Failure::Runtime(format!("cannot listen on {addr}: {e}")))?;
    eprintln!("serve: listening on http://{addr}");
    // Connections queue their requests here; a full queue makes them wait (backpressure).
    // Actions have a lane and workers of their own: a running action and others waiting for
    // the lock never hold the workers that answer the page, `/healthz` and `/metrics`.
    let (jobs, requests) = tokio::sync::mpsc::channel::<Request>(256);
    let (actions, action_requests) = tokio::sync::mpsc::channel::<Request>(64);
    let requests = Arc::new(Mutex::new(requests));
    let action_requests = Arc::new(Mutex::new(action_requests));
    let lanes = http::Lanes {
        requests: jobs,
        actions,
    };
    let live = std::sync::RwLock::new(Arc::new(Live {
        compiled: Arc::clone(&compiled),
        broken: None,
    }));
    let live = &live;
    let evaluated = std::sync::RwLock::new(None);
    let evaluated = &evaluated;
    std::thread::scope(|scope| {
        scope.spawn(move || evaluate_in_background(app, live, evaluated));
        scope.spawn(move || {
            if let Err(e) = http::serve(listener, lanes, limits) {
                eprintln!("serve: cannot start the HTTP server: {e}");
                std::process::exit(1);
            }
        });
        scope.spawn(move || watch(app, live));
        scope.spawn(move || evaluate_and_alert(app, live, alert_every));
        let workers = std::iter::repeat_n(&requests, WORKERS)
            .chain(std::iter::repeat_n(&action_requests, ACTION_WORKERS));
        for requests in workers {
            let requests = Arc::clone(requests);
            let tokens = &tokens;
            let hosts = &hosts;
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
                loop {
                    let next = match requests.lock() {
                        Ok(mut r) => r.blocking_recv(),
                        Err(poisoned) => poisoned.into_inner().blocking_recv(),
                    };
                    let Some(request) = next else { return };
                    // The plans as they stand for this request.
                    let now = match live.read() {
                        Ok(l) => Arc::clone(&l),
                        Err(p) => Arc::clone(&p.into_inner()),
                    };
                    let site = Site {
                        app,
                        compiled: &now.compiled,
                        broken: now.broken.as_ref(),
                        evaluated: Some(evaluated),
                        hosts,
                        store: &store,
                        tokens,
                        action_wait,
                    };
                    respond(&site, request);
                }
            });
        }
    });
    Ok(())
}

/// `serve`'s own evaluation, every `--alert-every` (a minute): a dead timer or plans that stopped loading are
/// told to the alert channels even when no apply runs. The alert state keeps the channels
/// from hearing a change twice (an apply sends through the same state, one at a time).
fn evaluate_and_alert(app: &App, live: &std::sync::RwLock<Arc<Live>>, every: Duration) {
    loop {
        std::thread::sleep(every.max(Duration::from_secs(1)));
        let Ok(now) = live.read().map(|l| Arc::clone(&l)) else {
            continue;
        };
        let now_stamp = crate::clock::stamp(app.clock.now());
        let Ok(store) = Store::open(&app.state.value, &now_stamp) else {
            continue;
        };
        let _sender = crate::alert::sender_lock(&app.state.value);
        match &now.broken {
            Some(check) => {
                for line in crate::alert::remembered::plans_broken(
                    app.alerting(),
                    &store,
                    check,
                    &app.env_redactor(),
                ) {
                    if !line.ends_with("nothing changed") {
                        eprintln!("serve: {line}");
                    }
                }
            }
            None => {
                let Ok(checks) = crate::facts::checks(&now.compiled, Some(&store), app.clock.now())
                else {
                    continue;
                };
                let redactor = app.redactor(&now.compiled);
                for line in
                    crate::alert::notify(app.alerting(), &now.compiled, &store, &checks, &redactor)
                {
                    if !line.ends_with("nothing changed") {
                        eprintln!("serve: {line}");
                    }
                }
            }
        }
    }
}
