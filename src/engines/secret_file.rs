//! A temporary file readable only by us (0600) that carries a credential to a tool, so the
//! secret never appears on a command line; removed when dropped.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct SecretFile {
    path: PathBuf,
}

impl SecretFile {
    pub fn create(prefix: &str, content: &str) -> Result<SecretFile, String> {
        let dir = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        for attempt in 0..100u32 {
            let path = dir.join(format!(
                "ops-run-{prefix}-{}-{nanos}-{attempt}",
                std::process::id()
            ));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(content.as_bytes())
                        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                    return Ok(SecretFile { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(format!(
                        "cannot create a credentials file in {}: {e}",
                        dir.display()
                    ));
                }
            }
        }
        Err("cannot create a credentials file: too many attempts".into())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Removes the credentials files of ops-run processes that no longer run (one killed with
/// `kill -9` never reached `Drop`): `ops-run-PREFIX-PID-NANOS-N` in the temporary folder.
/// Returns them. Another user's files stay (the folder is sticky, and they are not ours).
pub fn remove_orphans() -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return removed;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("ops-run-") else {
            continue;
        };
        let parts: Vec<&str> = rest.split('-').collect();
        let [prefix, pid, nanos, attempt] = parts.as_slice() else {
            continue;
        };
        let ours = ["pgpass", "my"].contains(prefix)
            && nanos.parse::<u32>().is_ok()
            && attempt.parse::<u32>().is_ok();
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if ours
            && !alive
            && e.file_type().is_ok_and(|t| t.is_file())
            && std::fs::remove_file(e.path()).is_ok()
        {
            removed.push(e.path());
        }
    }
    removed
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
