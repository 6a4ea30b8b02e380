//! SHA-256 of whole files, and the `sha256sum` sidecar format.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn file_sha256(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Counts and hashes what is written through it (an archive, an encrypted dump) on its way to
/// the file: one pass, no second read.
pub struct Hashing<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Hashing<W> {
    pub fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The writer, the bytes written and their SHA-256.
    pub fn into_parts(self) -> (W, u64, String) {
        (self.inner, self.bytes, hex(&self.hasher.finalize()))
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `HASH  NAME\n`, the line `sha256sum -c` reads (the name relative to the sidecar's folder).
pub fn sidecar_line(sha: &str, file_name: &str) -> String {
    format!("{sha}  {file_name}\n")
}

/// The hash a sidecar claims for `file_name`, if it is well-formed and names that file.
pub fn parse_sidecar(text: &str, file_name: &str) -> Option<String> {
    let line = text.lines().next()?;
    let (hash, name) = line.split_once(' ')?;
    let name = name.trim_start_matches([' ', '*']);
    (hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()) && name == file_name)
        .then(|| hash.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_round_trip() {
        let sha = "a".repeat(64);
        let line = sidecar_line(&sha, "full-20260101-0200.sql.gz");
        assert_eq!(
            parse_sidecar(&line, "full-20260101-0200.sql.gz"),
            Some(sha.clone())
        );
        assert_eq!(parse_sidecar(&line, "other.sql.gz"), None);
        assert_eq!(parse_sidecar("short  full.sql.gz", "full.sql.gz"), None);
    }
}
