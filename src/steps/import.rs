//! A dump streamed into a database through the engine's client, as verify, drill and
//! `restore db` do it: decompressed on a thread of its own (`codec::Ahead`), owners and
//! privileges left out unless kept, refused when the stream lacks the completion line. For
//! PostgreSQL the data section loads on two sessions at once (`engines::split`).

use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::StepError;
use super::restore_test::{exit_reason, truncated};
use crate::artifact::codec::Codec;
use crate::artifact::end::{StreamEnd, TeeEnd};
use crate::artifact::seal::Keyring;
use crate::engines::client::Client;
use crate::engines::ownership::{self, LineFilter};
use crate::engines::split::{Claims, Join, Splitter};
use crate::exec::{self, ProcessResult, ProcessSpec, redact::Redactor};

/// What an import did.
pub(crate) struct Import {
    /// Statements the ownership filter left out or rewrote.
    pub changed: u64,
    /// With two sessions: how many tables' rows each loaded (main, helper).
    pub sessions: Option<(usize, usize)>,
    pub result: Result<(), StepError>,
}

impl Import {
    /// The lines a verify log or a restore shows about it.
    pub fn lines(&self, keep_ownership: bool) -> Vec<String> {
        let mut lines = vec![ownership_line(keep_ownership, self.changed)];
        if let Some((main, helper)) = self.sessions {
            lines.push(format!(
                "sessions: 2 (the rows of {main} tables on the first, of {helper} on the second)"
            ));
        }
        lines
    }
}

/// What the ownership filter did, for a log.
pub(crate) fn ownership_line(keep: bool, changed: u64) -> String {
    if keep {
        "ownership: kept as dumped".to_string()
    } else {
        format!("ownership: ignored ({changed} owner, privilege or definer statements left out)")
    }
}

fn filter(client: &Client, keep_ownership: bool) -> Box<dyn LineFilter> {
    if keep_ownership {
        Box::new(ownership::Keep)
    } else {
        client.ownership()
    }
}

/// Streams the dump at `dump` into database `db`, on two sessions when `sessions` is 2 and
/// the engine can.
pub(crate) fn import_dump(
    client: &Client,
    db: &str,
    (dump, key): (&Path, Option<&Keyring>),
    keep_ownership: bool,
    sessions: u32,
    timeout: Option<Duration>,
    redactor: &Redactor,
) -> Import {
    let mut import = client.import(db);
    import.timeout = timeout;
    if sessions > 1 && client.split_import() {
        return import_split(client, &import, dump, key, keep_ownership, redactor);
    }
    let path = dump.to_path_buf();
    let key = key.cloned();
    let marker = client.marker();
    let prelude = client.import_prelude();
    let filter = filter(client, keep_ownership);
    let changed = Arc::new(AtomicU64::new(0));
    let counted = changed.clone();
    let (r, feed_error) = exec::run_feeding(
        &import,
        redactor,
        Box::new(move |w| {
            // The filter passes line by line: buffer, or each line is a write to the pipe.
            let mut buffered = BufWriter::with_capacity(256 << 10, w);
            buffered.write_all(prelude.as_bytes())?;
            stream(&path, key.as_ref(), filter, counted, marker, &mut buffered)
        }),
    );
    Import {
        changed: changed.load(Ordering::Relaxed),
        sessions: None,
        result: outcome(&import, &r, feed_error, ""),
    }
}

/// The dump at `path`, decompressed and filtered, into `out`; refused without the
/// completion line.
fn stream(
    path: &Path,
    key: Option<&Keyring>,
    filter: Box<dyn LineFilter>,
    counted: Arc<AtomicU64>,
    marker: &str,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut source = Codec::open(path, key)?;
    let mut end = StreamEnd::default();
    let mut filtered = ownership::Filtered::new(out, filter, counted);
    std::io::copy(
        &mut source,
        &mut TeeEnd {
            end: &mut end,
            inner: &mut filtered,
        },
    )?;
    filtered.finish()?;
    truncated(&end, marker)
}

/// The error of one import session, if it failed.
fn outcome(
    spec: &ProcessSpec,
    r: &ProcessResult,
    feed_error: Option<std::io::Error>,
    which: &str,
) -> Result<(), StepError> {
    if let Some(e) = feed_error {
        return Err(format!("the import failed{which}: {e}").into());
    }
    if !r.success() {
        return Err(format!(
            "the import failed{which}: {}\n{}",
            exit_reason(spec, r),
            r.tail.trim()
        )
        .into());
    }
    Ok(())
}

/// Why the main session's wait for the helper ended without it: the other session's
/// failure, which is not the main session's own.
#[derive(Debug, thiserror::Error)]
enum Stopped {
    #[error("the second import session failed")]
    HelperFailed,
    #[error("stopped: the other import session failed")]
    Linked,
}

fn stopped(why: Stopped) -> std::io::Error {
    std::io::Error::other(why)
}

/// The import on two sessions (see `engines::split`): each session has its own reader of
/// the dump; the main one checks the completion line; either one failing stops both.
fn import_split(
    client: &Client,
    import: &ProcessSpec,
    dump: &Path,
    key: Option<&Keyring>,
    keep_ownership: bool,
    redactor: &Redactor,
) -> Import {
    let marker = client.marker();
    let prelude = client.import_prelude();
    let claims = Arc::new(Claims::default());
    let link = Arc::new(AtomicBool::new(false));
    // The helper's end: None while it runs, then whether it succeeded.
    let helper_end = Arc::new((Mutex::new(None::<bool>), Condvar::new()));
    let changed = Arc::new(AtomicU64::new(0));
    let deadline = exec::escape::step_deadline();

    let join: Join = {
        let helper_end = Arc::clone(&helper_end);
        let link = Arc::clone(&link);
        Box::new(move || {
            let (ended, moved) = &*helper_end;
            let mut ended = ended.lock().map_err(|_| stopped(Stopped::Linked))?;
            loop {
                match *ended {
                    Some(true) => return Ok(()),
                    Some(false) => return Err(stopped(Stopped::HelperFailed)),
                    None if link.load(Ordering::SeqCst) => return Err(stopped(Stopped::Linked)),
                    None => {}
                }
                ended = moved
                    .wait_timeout(ended, Duration::from_millis(50))
                    .map_err(|_| stopped(Stopped::Linked))?
                    .0;
            }
        })
    };
    let main_feeder: exec::Feeder = {
        let path = dump.to_path_buf();
        let key = key.cloned();
        let filter = filter(client, keep_ownership);
        let claims = Arc::clone(&claims);
        let counted = Arc::clone(&changed);
        Box::new(move |w| {
            let mut buffered = BufWriter::with_capacity(256 << 10, w);
            buffered.write_all(prelude.as_bytes())?;
            let mut split = Splitter::main(buffered, claims, join);
            stream(&path, key.as_ref(), filter, counted, marker, &mut split)?;
            split.finish().map(drop)
        })
    };
    let helper_feeder: exec::Feeder = {
        let path = dump.to_path_buf();
        let key = key.cloned();
        // The same filter as the main session's: both readers see the same stream.
        let filter = filter(client, keep_ownership);
        let claims = Arc::clone(&claims);
        Box::new(move |w| {
            let mut source = Codec::open(&path, key.as_ref())?;
            let buffered = BufWriter::with_capacity(256 << 10, w);
            let mut split = Splitter::helper(buffered, claims);
            let mut filtered =
                ownership::Filtered::new(&mut split, filter, Arc::new(AtomicU64::new(0)));
            let mut buf = vec![0u8; 256 << 10];
            // Only until the data section ends: the main session waits for this one's end.
            while !filtered.get_ref().done() {
                let n = source.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                filtered.write_all(&buf[..n])?;
            }
            filtered.finish()?;
            split.finish().map(drop)
        })
    };

    let (main, helper) = std::thread::scope(|scope| {
        let helper = scope.spawn(|| {
            let r = exec::escape::with_deadline(deadline, || {
                exec::run_feeding_linked(import, redactor, helper_feeder, &link)
            });
            let (ended, moved) = &*helper_end;
            if let Ok(mut e) = ended.lock() {
                *e = Some(r.0.success() && r.1.is_none());
            }
            moved.notify_all();
            r
        });
        let main = exec::run_feeding_linked(import, redactor, main_feeder, &link);
        let helper = helper.join();
        (main, helper)
    });
    let (main_r, main_feed) = main;
    let main_own_feed = main_feed.filter(|e| !e.get_ref().is_some_and(|i| i.is::<Stopped>()));
    let main_exited_itself = matches!(main_r.exit, exec::Exit::Code(n) if n != 0);
    let result = match helper {
        // The main session's own failure first (a damaged or cut dump, an SQL error): the
        // other session only stopped because of it.
        _ if main_own_feed.is_some() || main_exited_itself => {
            outcome(import, &main_r, main_own_feed, "")
        }
        // The helper's own failure (its psql exited with an error, or its reader failed);
        // a helper stopped by the main session's end, a timeout or a SIGTERM says nothing
        // the main session does not.
        Ok((helper_r, helper_feed))
            if helper_feed.is_some() || matches!(helper_r.exit, exec::Exit::Code(n) if n != 0) =>
        {
            outcome(import, &helper_r, helper_feed, " (second session)")
        }
        Ok(_) => outcome(import, &main_r, None, ""),
        Err(_) => Err("the import failed: the second import session's thread died".into()),
    };
    // A server or role that allows one more connection only refuses one of the two.
    let result = result.map_err(|e| {
        let e = e.to_string();
        match ["too many", "connection slots"]
            .iter()
            .any(|m| e.contains(m))
        {
            true => StepError::from(format!(
                "{e}\nops-run: a PostgreSQL import uses two sessions; `sessions 1` on the step \
                 (or `restore db --sessions 1`) uses one"
            )),
            false => StepError::from(e),
        }
    });
    Import {
        changed: changed.load(Ordering::Relaxed),
        sessions: Some(claims.counts()),
        result,
    }
}
