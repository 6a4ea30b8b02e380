//! One apply at a time per state database: an flock on `<state>.lock` naming its holder.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct ApplyLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it: who, as written in the lock file.
    #[error("another apply holds the lock ({0})")]
    Held(String),
    #[error("{0}")]
    Io(String),
    /// The backup base belongs to another state database, or cannot be claimed.
    #[error("{0}")]
    Base(String),
}

pub fn lock_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the lock, waiting up to `wait` (zero: not at all).
pub fn acquire(state: &Path, wait: Duration, started_at: &str) -> Result<ApplyLock, LockError> {
    let path = lock_path(state);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| LockError::Io(format!("cannot open the lock {}: {e}", path.display())))?;
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                if Instant::now() >= deadline {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim();
                    return Err(LockError::Held(if holder.is_empty() {
                        "another process".into()
                    } else {
                        holder.to_string()
                    }));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(LockError::Io(format!(
                    "cannot lock {}: {e}",
                    path.display()
                )));
            }
        }
    }
    // Say who holds it, for the next one's message.
    let _ = file.set_len(0);
    let _ = file.seek(SeekFrom::Start(0));
    let _ = write!(file, "pid {} since {started_at}", std::process::id());
    let _ = file.flush();
    Ok(ApplyLock { _file: file })
}

/// The file in a backup base that names the state database owning it.
pub const BASE_OWNER: &str = ".ops-run-state";

/// Claims `base` for the state database `state`, or refuses when another state database owns
/// it: two logs over one base would prune, migrate and judge each other's files. The first
/// state database to run on a base writes its path into `BASE/.ops-run-state` (created
/// exclusively, so two first runs cannot both win).
pub fn claim_base(base: &Path, state: &Path) -> Result<(), LockError> {
    claim(base, state).map_err(LockError::Base)
}

fn claim(base: &Path, state: &Path) -> Result<(), String> {
    let state = match (state.parent(), state.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            std::fs::canonicalize(dir).map_or_else(|_| state.to_path_buf(), |d| d.join(name))
        }
        _ => state.to_path_buf(),
    };
    std::fs::create_dir_all(base)
        .map_err(|e| format!("cannot create the backup base {}: {e}", base.display()))?;
    let owner = base.join(BASE_OWNER);
    let line = format!("{}\n", state.display());
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&owner)
    {
        Ok(mut f) => {
            return f
                .write_all(line.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| format!("cannot write {}: {e}", owner.display()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", owner.display())),
    }
    let mut text = String::new();
    File::open(&owner)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| format!("cannot read {}: {e}", owner.display()))?;
    let named = text.trim_end_matches('\n');
    if named.is_empty() {
        // A claim cut short (a crash between create and write): ours to finish.
        return std::fs::write(&owner, line.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", owner.display()));
    }
    if Path::new(named) == state {
        return Ok(());
    }
    Err(format!(
        "the backup base {} belongs to the state database {named} ({} says so), not to {}: \
         two state databases on one base would prune and judge each other's files. Use one \
         state database (--state / OPS_STATE) or another base; if {named} is gone for good, \
         remove {} and run again",
        base.display(),
        owner.display(),
        state.display(),
        owner.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_belongs_to_the_first_state_database_that_runs_on_it() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        let a = dir.path().join("a.db");
        let b = dir.path().join("b.db");
        claim_base(&base, &a).unwrap();
        claim_base(&base, &a).unwrap();
        let refused = claim_base(&base, &b).unwrap_err().to_string();
        assert!(
            refused.contains(&format!("belongs to the state database {}", a.display())),
            "{refused}"
        );
        // An empty owner file (a crash mid-claim) is claimed again.
        std::fs::write(base.join(BASE_OWNER), "").unwrap();
        claim_base(&base, &b).unwrap();
        assert!(claim_base(&base, &a).is_err());
    }
}
