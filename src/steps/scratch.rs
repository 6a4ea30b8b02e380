//! Scratch folders of a step (a drill's restored files, a verify's dump fetched from a copy):
//! named `PREFIX<pid>`, removed when done, and swept when the ops-run that made them was killed.

use std::path::{Path, PathBuf};

/// Removes a folder and everything in it when dropped.
pub struct RemoveTree(pub PathBuf);

impl Drop for RemoveTree {
    fn drop(&mut self) {
        remove_tree(&self.0);
    }
}

/// `remove_dir_all`, with the subfolders shared out to a few threads: unlinking is the
/// kernel's work, and a restored tree of 10,000 files took twice as long on one thread.
pub fn remove_tree(root: &Path) {
    const THREADS: usize = 4;
    // Breadth first, until there are enough folders to share out (or no deeper ones).
    let mut level = vec![root.to_path_buf()];
    while level.len() < 4 * THREADS {
        let next: Vec<PathBuf> = level
            .iter()
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        if next.is_empty() {
            break;
        }
        level = next;
    }
    if level.len() > 1 {
        let queue = std::sync::Mutex::new(level);
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    while let Some(d) = queue.lock().ok().and_then(|mut q| q.pop()) {
                        let _ = std::fs::remove_dir_all(d);
                    }
                });
            }
        });
    }
    let _ = std::fs::remove_dir_all(root);
}

/// Removes the folders `PREFIX<pid>` in `dir` whose ops-run is gone; their paths.
pub fn sweep(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if crate::exec::escape::still_running(pid) {
            continue;
        }
        remove_tree(&e.path());
        if !e.path().exists() {
            removed.push(e.path());
        }
    }
    removed
}

/// A database or file that ops-run makes for a while (a verify's scratch database, a
/// restore's database or file loaded under a temporary name) is announced before it exists:
/// a marker `.NAME.scratch.PID` (a database: its `database` block and the database to connect
/// to for the drop) or `.NAME.scratch-file.PID` (a file: its path) in a folder of the step.
/// When the ops-run that wrote it is gone, the next session removes what the marker names.
const DATABASE_MARK: &str = ".scratch.";
const FILE_MARK: &str = ".scratch-file.";

/// What a marker names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scratch {
    /// A database on the server of the plan's `database` block `block`, dropped from
    /// `maintenance` (None: the block's own database, as the first markers said).
    Database {
        block: String,
        maintenance: Option<String>,
    },
    /// A file, removed with its SQLite journals.
    File(PathBuf),
}

/// An announced scratch thing. The marker stays until `done` (the thing is gone, or has
/// become what it was made for): whatever else happens, the next session finds it.
pub struct Announced(PathBuf);

impl Announced {
    pub fn done(self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes the marker for `name` in `dir` (created when missing) before `name` is made.
pub fn announce(dir: &Path, name: &str, what: &Scratch) -> Result<Announced, String> {
    let (mark, text) = match what {
        Scratch::Database { block, maintenance } => (
            DATABASE_MARK,
            format!("{block}\n{}\n", maintenance.as_deref().unwrap_or("")),
        ),
        Scratch::File(path) => (
            FILE_MARK,
            format!(
                "{}\n",
                std::path::absolute(path).unwrap_or(path.clone()).display()
            ),
        ),
    };
    let marker = dir.join(format!(".{name}{mark}{}", std::process::id()));
    std::fs::create_dir_all(dir)
        .and_then(|()| crate::artifact::layout::write_atomic(&marker, text.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", marker.display()))?;
    Ok(Announced(marker))
}

/// The markers in `dir` whose ops-run is gone: the scratch name, what it is, the marker.
pub fn left_behind(dir: &Path) -> Vec<(String, Scratch, PathBuf)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = file.strip_prefix('.') else {
            continue;
        };
        let (name, pid, file_mark) =
            match (rest.rsplit_once(FILE_MARK), rest.rsplit_once(DATABASE_MARK)) {
                (Some((n, p)), _) => (n, p, true),
                (None, Some((n, p))) => (n, p, false),
                (None, None) => continue,
            };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if crate::exec::escape::still_running(pid) {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        let mut lines = text.lines().map(str::trim);
        let first = lines.next().unwrap_or("").to_string();
        let what = if file_mark {
            Scratch::File(PathBuf::from(first))
        } else {
            Scratch::Database {
                block: first,
                maintenance: lines.next().filter(|m| !m.is_empty()).map(str::to_string),
            }
        };
        out.push((name.to_string(), what, e.path()));
    }
    out
}

/// Removes a scratch file and the journals SQLite may have left beside it.
pub fn remove_sqlite_file(path: &Path) {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// Drops or removes what killed ops-runs left in `dir` (`accept`: the names this caller
/// owns), one line each for the operator; `whose` names the step or the restore.
pub fn sweep_announced(
    ctx: &super::Context,
    dir: &Path,
    accept: impl Fn(&str) -> bool,
    whose: &str,
) -> Vec<String> {
    let mut said = Vec::new();
    for (name, what, marker) in left_behind(dir) {
        if !accept(&name) {
            continue;
        }
        let (thing, done, result) = match &what {
            Scratch::File(path) => {
                remove_sqlite_file(path);
                (
                    format!("the scratch file {}", path.display()),
                    "removed",
                    match path.exists() {
                        true => Err("it is still there".to_string()),
                        false => Ok(()),
                    },
                )
            }
            Scratch::Database { block, maintenance } => (
                format!("the scratch database {name}"),
                "dropped",
                ctx.database(block)
                    .and_then(|db| {
                        let client =
                            crate::engines::client::Client::new(&ctx.target(db)?, &ctx.plan.tools)?;
                        let maintenance = maintenance.clone().unwrap_or_else(|| {
                            db.dbname
                                .as_ref()
                                .map_or("postgres".to_string(), |n| n.value.clone())
                        });
                        Ok(client.drop_scratch(&maintenance, &name, ctx.redactor)?)
                    })
                    .map_err(|e| e.to_string()),
            ),
        };
        said.push(match result {
            Ok(()) => {
                let _ = std::fs::remove_file(&marker);
                format!("{done} {thing} of {whose} (left by an ops-run that was killed)")
            }
            Err(why) => format!(
                "cannot remove {thing} of {whose} left by a killed ops-run (the next apply tries again): {}",
                ctx.redactor.redact(&why)
            ),
        });
    }
    said
}
