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
