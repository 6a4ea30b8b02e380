//! A temporary file readable only by us (0600) that carries a credential to a tool, so the
//! secret never appears on a command line; removed when dropped. The files live in a private
//! folder (0700) beside the state database, `STATE.credentials/`, not in the shared `/tmp`;
//! what a killed ops-run left there is removed at the next start.

use super::EngineError;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct SecretFile {
    path: PathBuf,
}

static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Puts the credentials folder beside the state database `state` (once per process).
pub fn beside(state: &Path) {
    let mut name = state.as_os_str().to_owned();
    name.push(".credentials");
    let _ = DIR.set(PathBuf::from(name));
}

/// The credentials folder (the system's temporary folder until `beside` was called).
fn dir() -> PathBuf {
    DIR.get().cloned().unwrap_or_else(std::env::temp_dir)
}

/// Creates the private folder (0700), or makes an existing one private again.
fn private_dir() -> Result<PathBuf, EngineError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = dir();
    if DIR.get().is_none() {
        return Ok(dir);
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .and_then(|()| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|source| EngineError::CredentialsFolder {
            path: dir.clone(),
            source,
        })?;
    Ok(dir)
}

impl SecretFile {
    pub fn create(prefix: &str, content: &str) -> Result<SecretFile, EngineError> {
        let dir = private_dir()?;
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
                        .map_err(|source| EngineError::Credentials {
                            path: dir.clone(),
                            source,
                        })?;
                    return Ok(SecretFile { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(EngineError::Credentials {
                        path: dir.clone(),
                        source: e,
                    });
                }
            }
        }
        Err(EngineError::CredentialsExhausted)
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
    // The private folder, and the temporary folder where older versions wrote them.
    let mut folders = vec![dir(), std::env::temp_dir()];
    folders.dedup();
    for e in folders
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|d| d.flatten())
    {
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
        if ours
            && !crate::exec::escape::still_running(pid)
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
