//! The only place that spawns processes: own process group, bounded output tail, timeouts and
//! interruption kill the whole group (TERM, grace, KILL).

pub mod escape;
pub mod redact;
pub mod signals;
pub mod tail;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use redact::Redactor;
use tail::Tail;

/// What a process started with `minimal_env` keeps of ops-run's environment: where programs
/// are, whose home, the language, locale and time zone. No secret lives in these.
pub const MINIMAL_ENV: [&str; 8] = [
    "PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME",
];

/// Bytes of output kept for the activity's `log_excerpt`.
pub const TAIL_BYTES: usize = 8 * 1024;
/// How long a group gets between TERM and KILL.
pub const GRACE: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(20);

/// A process to run: a plain value, so steps can build it and tests can assert it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessSpec {
    pub program: String,
    pub args: Vec<String>,
    /// Added to the inherited environment.
    pub env: Vec<(String, String)>,
    pub dir: Option<PathBuf>,
    pub timeout: Option<Duration>,
    /// Cleanup commands (dropping a scratch database) must finish even after SIGTERM.
    pub ignore_interrupt: bool,
    /// Start from a minimal environment (`MINIMAL_ENV`) instead of ops-run's own, which holds
    /// every secret it was given: for programs that need none of them, or get theirs by name.
    pub minimal_env: bool,
    /// A server the command starts on purpose (`pg_ctl start`, which detaches it with
    /// `setsid`): what it leaves running when it returns is not killed as escaped.
    pub detach: bool,
}

impl ProcessSpec {
    pub fn new(
        program: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        ProcessSpec {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            dir: None,
            timeout: None,
            ignore_interrupt: false,
            minimal_env: false,
            detach: false,
        }
    }

    /// The argv as a shell would read it, secrets redacted.
    pub fn display(&self, redactor: &Redactor) -> String {
        let words: Vec<String> = std::iter::once(&self.program)
            .chain(&self.args)
            .map(|w| shell_quote(w))
            .collect();
        redactor.redact(&words.join(" "))
    }
}

pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    TimedOut(Duration),
    Interrupted,
    SpawnFailed(String),
}

impl Exit {
    /// Why a run of `program` did not succeed, in the words every step uses; None for exit 0.
    pub fn reason(&self, program: &str) -> Option<String> {
        Some(match self {
            Exit::Code(0) => return None,
            Exit::Code(n) => format!("{program} exited with status {n}"),
            Exit::Signal(s) => format!("{program} was killed by signal {s}"),
            Exit::TimedOut(t) => format!("timed out after {}", crate::units::duration::format(*t)),
            Exit::Interrupted => "interrupted: ops-run was stopped (SIGINT/SIGTERM)".into(),
            Exit::SpawnFailed(why) => why.clone(),
        })
    }
}

#[derive(Clone, Debug)]
pub struct ProcessResult {
    pub exit: Exit,
    /// The redacted tail of stdout and stderr, interleaved as written.
    pub tail: String,
    pub duration: Duration,
}

impl ProcessResult {
    pub fn success(&self) -> bool {
        self.exit == Exit::Code(0)
    }
}

/// Runs `spec` to the end: in its own process group, stdin from /dev/null, stdout and stderr
/// into one pipe of which only the tail is kept. When the main process exits, whatever it
/// left in its group is killed too, so a step never leaves processes behind.
pub fn run(spec: &ProcessSpec, redactor: &Redactor) -> ProcessResult {
    run_inner(spec, redactor, None, None, None).0
}

/// Writes a process's stdin (on a thread of its own), e.g. a decompressed dump.
pub type Feeder<'a> = Box<dyn FnOnce(&mut dyn std::io::Write) -> std::io::Result<()> + Send + 'a>;

/// Like `run`, with stdin written by `feeder`. A feeder error (an unreadable dump) kills the
/// process group and is returned beside the result; a process that stops reading early ends
/// the feeder with a broken pipe, which is not reported.
pub fn run_feeding(
    spec: &ProcessSpec,
    redactor: &Redactor,
    feeder: Feeder,
) -> (ProcessResult, Option<std::io::Error>) {
    run_inner(spec, redactor, None, Some(feeder), None)
}

/// Like `run_feeding`, for one of several processes that stand or fall together: the process
/// is killed as soon as `link` is set, and sets it when it ends without success.
pub fn run_feeding_linked(
    spec: &ProcessSpec,
    redactor: &Redactor,
    feeder: Feeder,
    link: &AtomicBool,
) -> (ProcessResult, Option<std::io::Error>) {
    run_inner(spec, redactor, None, Some(feeder), Some(link))
}

/// Like `run`, with the whole stdout returned (a tool's JSON answer, never a dump).
pub fn run_capturing(spec: &ProcessSpec, redactor: &Redactor) -> (ProcessResult, Vec<u8>) {
    let mut out = Vec::new();
    let (result, _) = run_streaming(spec, redactor, &mut |b| {
        out.extend_from_slice(b);
        Ok(())
    });
    (result, out)
}

/// Like `run`, but stdout goes to `consumer` (on this thread) and only stderr to the tail.
/// When the consumer fails (say, the disk is full), the process group is killed and the
/// consumer's error is returned beside the result.
pub fn run_streaming(
    spec: &ProcessSpec,
    redactor: &Redactor,
    consumer: Consumer,
) -> (ProcessResult, Option<std::io::Error>) {
    run_inner(spec, redactor, Some(consumer), None, None)
}

/// Reads the pipe into the tail on a thread of its own; `done` hears when the pipe is closed.
fn reader_into_tail(
    reader: os_pipe::PipeReader,
    tail: Arc<Mutex<Tail>>,
    slack: usize,
    done: std::sync::mpsc::Sender<()>,
) {
    std::thread::spawn(move || {
        let _done = done;
        let mut reader = reader;
        let mut buf = [0u8; 16 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Ok(mut t) = tail.lock() {
                        t.push(&buf[..n], slack);
                    }
                }
            }
        }
    });
}

/// Takes a process's stdout, chunk by chunk.
pub type Consumer<'a> = &'a mut dyn FnMut(&[u8]) -> std::io::Result<()>;

fn run_inner(
    spec: &ProcessSpec,
    redactor: &Redactor,
    consumer: Option<Consumer>,
    feeder: Option<Feeder>,
    link: Option<&AtomicBool>,
) -> (ProcessResult, Option<std::io::Error>) {
    let started = Instant::now();
    let token = escape::token();
    let failed = |why: String| (spawn_failed(why, started), None);
    // Nothing starts after its step's time is up.
    if let Some((deadline, total)) = escape::step_deadline().filter(|_| !spec.ignore_interrupt)
        && Instant::now() >= deadline
    {
        let mut r = spawn_failed(String::new(), started);
        r.exit = Exit::TimedOut(total);
        return (r, None);
    }
    let (err_reader, err_writer) = match os_pipe::pipe() {
        Ok(p) => p,
        Err(e) => return failed(format!("cannot create a pipe: {e}")),
    };
    // With a consumer, stdout has a pipe of its own; otherwise it joins stderr.
    let out_pipe = match consumer {
        Some(_) => match os_pipe::pipe() {
            Ok(p) => Some(p),
            Err(e) => return failed(format!("cannot create a pipe: {e}")),
        },
        None => None,
    };
    let (out_reader, out_writer) = match out_pipe {
        Some((r, w)) => (Some(r), Some(w)),
        None => (None, None),
    };
    let (in_reader, in_writer) = match &feeder {
        Some(_) => match os_pipe::pipe() {
            Ok((r, w)) => (Some(r), Some(w)),
            Err(e) => return failed(format!("cannot create a pipe: {e}")),
        },
        None => (None, None),
    };
    let handle = {
        let mut expr = match in_reader {
            Some(r) => duct::cmd(&spec.program, &spec.args).stdin_file(r),
            None => duct::cmd(&spec.program, &spec.args).stdin_null(),
        };
        expr = match out_writer {
            Some(w) => expr.stderr_file(err_writer).stdout_file(w),
            None => expr.stderr_to_stdout().stdout_file(err_writer),
        };
        let parent = rustix::process::getpid();
        let mut expr = expr.unchecked().before_spawn(move |cmd| {
            cmd.process_group(0);
            // SAFETY: runs in the child between fork and exec, and only makes system calls
            // (prctl, getppid), which are async-signal-safe.
            unsafe {
                cmd.pre_exec(move || die_with_parent(parent));
            }
            Ok(())
        });
        let tag = (escape::TOKEN_VAR.to_string(), token.clone());
        if spec.minimal_env {
            let kept = MINIMAL_ENV
                .into_iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)));
            expr = expr.full_env(kept.chain(spec.env.iter().cloned()).chain([tag]));
        } else {
            for (k, v) in spec.env.iter().chain([&tag]) {
                expr = expr.env(k, v);
            }
        }
        if let Some(dir) = &spec.dir {
            expr = expr.dir(dir);
        }
        // Spawned while no escape sweep runs, and registered as a main process at once.
        let mut mains = escape::MAIN_PIDS.lock().unwrap_or_else(|p| p.into_inner());
        // The expression (holding our copies of the pipes' write ends) is dropped here, so
        // the readers see EOF once the children close theirs.
        let handle = expr.start();
        if let Ok(h) = &handle {
            mains
                .get_or_insert_default()
                .extend(h.pids().iter().map(|&p| p as i32));
        }
        handle
    };
    let handle = match handle {
        Ok(h) => h,
        Err(e) => return failed(format!("cannot start `{}`: {e}", spec.program)),
    };
    let pgid = handle
        .pids()
        .first()
        .copied()
        .and_then(|p| Pid::from_raw(p as i32));

    let tail = Arc::new(Mutex::new(Tail::new(TAIL_BYTES)));
    let (tail_done, tail_closed) = std::sync::mpsc::channel();
    reader_into_tail(err_reader, Arc::clone(&tail), redactor.longest(), tail_done);
    let abort = AtomicBool::new(false);
    // The process's own timeout, or what is left of its step's, whichever ends first (a
    // cleanup that must run after SIGTERM keeps its own).
    let own = spec.timeout.map(|t| (started + t, t));
    let step = escape::step_deadline().filter(|_| !spec.ignore_interrupt);
    let (deadline, timeout_shown) = match (own, step) {
        (Some(o), Some(s)) if s.0 < o.0 => (Some(s.0), s.1),
        (Some(o), _) => (Some(o.0), o.1),
        (None, Some(s)) => (Some(s.0), s.1),
        (None, None) => (None, Duration::ZERO),
    };
    let mut escaped = Vec::new();

    let (status, forced, consumer_error) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut forced: Option<Exit> = None;
            let status = loop {
                match handle.try_wait() {
                    Ok(Some(output)) => break Some(output.status),
                    Ok(None) => {}
                    Err(_) => break None,
                }
                if forced.is_none() {
                    if signals::interrupted() && !spec.ignore_interrupt {
                        forced = Some(Exit::Interrupted);
                    } else if deadline.is_some_and(|d| Instant::now() >= d) {
                        forced = Some(Exit::TimedOut(timeout_shown));
                    } else if abort.load(Ordering::SeqCst)
                        || link.is_some_and(|l| l.load(Ordering::SeqCst))
                    {
                        forced = Some(Exit::Signal(rustix::process::Signal::TERM.as_raw()));
                    }
                    if forced.is_some()
                        && let Some(pgid) = pgid
                    {
                        kill_group(pgid, &mut || {
                            let _ = handle.try_wait();
                        });
                    }
                }
                std::thread::sleep(POLL);
            };
            // An end without success (a feeder's error kills the process too): the linked
            // processes go as well, and a feeder waiting for one of them stops waiting.
            if let Some(link) = link
                && (forced.is_some() || !status.is_some_and(|s| s.success()))
            {
                link.store(true, Ordering::SeqCst);
            }
            // Whatever the main process left in its group goes with it, and what left the
            // group too.
            if let Some(pgid) = pgid {
                kill_group(pgid, &mut || {});
            }
            let mut mains = escape::MAIN_PIDS.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(m) = mains.as_mut() {
                for p in handle.pids() {
                    m.remove(&(p as i32));
                }
            }
            let escaped = if spec.detach {
                Vec::new()
            } else {
                escape::kill_escaped(&token, mains.get_or_insert_default())
            };
            drop(mains);
            (status, forced, escaped)
        });
        let feeding = match (feeder, in_writer) {
            (Some(feed), Some(mut w)) => Some(scope.spawn(|| {
                let r = feed(&mut w);
                drop(w);
                match r {
                    Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                        abort.store(true, Ordering::SeqCst);
                        Some(e)
                    }
                    _ => None,
                }
            })),
            _ => None,
        };
        let mut consumer_error = None;
        if let (Some(consumer), Some(mut reader)) = (consumer, out_reader) {
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if consumer_error.is_none()
                            && let Err(e) = consumer(&buf[..n])
                        {
                            consumer_error = Some(e);
                            abort.store(true, Ordering::SeqCst);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        consumer_error.get_or_insert(e);
                        abort.store(true, Ordering::SeqCst);
                        break;
                    }
                }
            }
        }
        let (status, forced, gone) = watcher.join().unwrap_or((None, None, Vec::new()));
        escaped = gone;
        if let Some(f) = feeding
            && let Ok(Some(e)) = f.join()
        {
            consumer_error.get_or_insert(e);
        }
        (status, forced, consumer_error)
    });
    // The output pipe closes when the last holder ends; one that ops-run could not end (it
    // runs as another user) is not waited for beyond the grace.
    let held = tail_closed
        .recv_timeout(GRACE)
        .is_err_and(|e| e == std::sync::mpsc::RecvTimeoutError::Timeout);
    let mut tail = tail.lock().map(|t| t.render(redactor)).unwrap_or_default();
    if !escaped.is_empty() {
        if !tail.is_empty() && !tail.ends_with('\n') {
            tail.push('\n');
        }
        tail.push_str(&format!(
            "ops-run: killed {} process(es) still running outside the step's process group: {}\n",
            escaped.len(),
            escaped.join(", ")
        ));
    }
    if held {
        tail.push_str("ops-run: the output is still held open by a process ops-run could not end; stopped reading\n");
    }
    let exit = forced.unwrap_or_else(|| match status {
        Some(s) => {
            use std::os::unix::process::ExitStatusExt;
            match (s.code(), s.signal()) {
                (Some(c), _) => Exit::Code(c),
                (None, Some(sig)) => Exit::Signal(sig),
                _ => Exit::Code(-1),
            }
        }
        None => Exit::SpawnFailed("lost track of the process".into()),
    });
    (
        ProcessResult {
            exit,
            tail,
            duration: started.elapsed(),
        },
        consumer_error,
    )
}

/// In a child before exec: it gets SIGKILL when ops-run dies (even by SIGKILL, when no
/// handler of ours runs), so no tool goes on writing into a restore, a repository or a
/// database after ops-run is gone. An ops-run that died before this was set is noticed by
/// the parent having changed.
fn die_with_parent(parent: Pid) -> std::io::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
    if rustix::process::getppid() != Some(parent) {
        return Err(std::io::Error::other(
            "ops-run ended before the process started",
        ));
    }
    Ok(())
}

fn spawn_failed(why: String, started: Instant) -> ProcessResult {
    ProcessResult {
        exit: Exit::SpawnFailed(why),
        tail: String::new(),
        duration: started.elapsed(),
    }
}

fn group_alive(pgid: Pid) -> bool {
    rustix::process::test_kill_process_group(pgid).is_ok()
}

/// TERM the group, give it `GRACE`, then KILL what is left. `reap` waits for the main
/// process without blocking: a main process that ended at once on TERM is a zombie, still a
/// member of its group, until it is reaped, and must not cost the whole grace.
pub fn kill_group(pgid: Pid, reap: &mut dyn FnMut()) {
    if !group_alive(pgid) {
        return;
    }
    let _ = rustix::process::kill_process_group(pgid, Signal::TERM);
    let until = Instant::now() + GRACE;
    while Instant::now() < until {
        reap();
        if !group_alive(pgid) {
            return;
        }
        std::thread::sleep(POLL);
    }
    let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_stdout_and_stderr_and_exit_code() {
        let spec = ProcessSpec::new("sh", ["-c", "echo out; echo err >&2; exit 3"]);
        let r = run(&spec, &Redactor::default());
        assert_eq!(r.exit, Exit::Code(3));
        assert!(
            r.tail.contains("out\n") && r.tail.contains("err\n"),
            "{:?}",
            r.tail
        );
    }

    #[test]
    fn streaming_separates_stdout_from_the_stderr_tail() {
        let spec = ProcessSpec::new("sh", ["-c", "echo data; echo more; echo warn >&2"]);
        let mut got = Vec::new();
        let (r, err) = run_streaming(&spec, &Redactor::default(), &mut |b| {
            got.extend_from_slice(b);
            Ok(())
        });
        assert!(err.is_none());
        assert!(r.success());
        assert_eq!(got, b"data\nmore\n");
        assert_eq!(r.tail, "warn\n");
    }

    #[test]
    fn a_failing_consumer_stops_the_process() {
        let spec = ProcessSpec::new("sh", ["-c", "yes"]);
        let started = Instant::now();
        let (r, err) = run_streaming(&spec, &Redactor::default(), &mut |_| {
            Err(std::io::Error::other("disk full"))
        });
        assert_eq!(err.unwrap().to_string(), "disk full");
        assert!(!r.success());
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_feeder_writes_stdin() {
        let spec = ProcessSpec::new("sh", ["-c", "wc -l"]);
        let (r, err) = run_feeding(
            &spec,
            &Redactor::default(),
            Box::new(|w| {
                for i in 0..1000 {
                    writeln!(w, "line {i}")?;
                }
                Ok(())
            }),
        );
        assert!(err.is_none());
        assert_eq!(r.tail.trim(), "1000");
    }

    #[test]
    fn a_process_that_escapes_its_group_is_killed_when_the_main_one_ends() {
        // `setsid` leaves the process group and keeps the output pipe open.
        let marker = format!("sleep 41.{}", std::process::id());
        let spec = ProcessSpec::new(
            "sh",
            ["-c", &format!("setsid {marker} & sleep 0.5; echo started")],
        );
        let started = Instant::now();
        let r = run(&spec, &Redactor::default());
        assert!(r.success(), "{:?}", r.exit);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert!(
            r.tail.contains("ops-run: killed 1 process(es) still running outside the step's process group: sleep (pid "),
            "{}",
            r.tail
        );
        let left = std::process::Command::new("pgrep")
            .args(["-f", &marker])
            .output()
            .unwrap();
        assert!(
            left.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&left.stdout)
        );
    }

    #[test]
    fn a_step_deadline_bounds_every_process_of_the_step() {
        let spec = ProcessSpec::new("sleep", ["30"]);
        let started = Instant::now();
        let r =
            escape::with_step_deadline(Duration::from_secs(1), || run(&spec, &Redactor::default()));
        assert_eq!(r.exit, Exit::TimedOut(Duration::from_secs(1)));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_process_that_ends_at_once_on_term_costs_no_grace() {
        // `sleep` dies on TERM; unreaped, it would stay in its group for the whole grace.
        let spec = ProcessSpec::new("sleep", ["30"]);
        let started = Instant::now();
        let r = escape::with_step_deadline(Duration::from_millis(300), || {
            run(&spec, &Redactor::default())
        });
        assert!(matches!(r.exit, Exit::TimedOut(_)), "{:?}", r.exit);
        assert!(
            started.elapsed() < GRACE - Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn missing_program_is_a_spawn_failure() {
        let spec = ProcessSpec::new("/nonexistent/ops-run-test", Vec::<String>::new());
        let r = run(&spec, &Redactor::default());
        assert!(
            matches!(r.exit, Exit::SpawnFailed(ref m) if m.contains("/nonexistent/ops-run-test")),
            "{:?}",
            r.exit
        );
    }

    #[test]
    fn display_quotes_and_redacts() {
        let spec = ProcessSpec::new("echo", ["a b", "pw=hunter22", "it's"]);
        let r = Redactor::new(["hunter22".to_string()]);
        assert_eq!(spec.display(&r), "echo 'a b' pw=*** 'it'\\''s'");
    }
}
