//! A PostgreSQL base backup on disk: `base-YYYYmmdd-HHMM.tar.zst` (the data directory
//! `pg_basebackup` wrote and `pg_verifybackup` checked, as one tar compressed with zstd) with
//! its sha256 sidecar and `<base>.manifest.json`: where in the WAL it starts and ends, on which
//! timeline, and when it was taken — what `restore cluster` and the WAL's retention and gap
//! check read.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::layout::{self, DumpFile};
use super::{sha, wal};

pub const PREFIX: &str = "base-";
pub const SUFFIX: &str = ".tar.zst";
pub const EXT: &str = "tar.zst";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseManifest {
    pub format: u32,
    pub kind: String,
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    pub uncompressed_bytes: u64,
    /// The server's major version (`PG_VERSION`): the binaries a restore starts.
    pub pg_version: String,
    pub tool_version: String,
    pub started_at: String,
    /// When `pg_basebackup` returned: a restore to any later instant can start from this base.
    pub finished_at: String,
    pub timeline: u32,
    pub start_lsn: String,
    pub end_lsn: String,
    /// The first WAL segment recovery from this base needs.
    pub start_wal: String,
    pub wal_segment_size: u64,
}

impl BaseManifest {
    pub fn finished(&self) -> Option<DateTime<Utc>> {
        crate::clock::parse_stamp(&self.finished_at)
    }

    /// The base's first segment: (timeline, segment number).
    pub fn start(&self) -> Option<(u32, u64)> {
        let lsn = wal::parse_lsn(&self.start_lsn)?;
        Some((self.timeline, lsn / self.wal_segment_size.max(1)))
    }
}

/// The base backups of `dir`, newest first.
pub fn list(dir: &Path, tz: Tz) -> Vec<DumpFile> {
    layout::list_stamped(dir, PREFIX, SUFFIX, tz)
}

/// What a base's bytes hash to (read once), and whether its sidecar and its manifest both
/// say so.
pub fn hash_matches(base: &DumpFile, m: &BaseManifest) -> io::Result<(String, bool)> {
    let actual = sha::file_sha256(&base.path)?;
    let sidecar = fs::read_to_string(layout::sidecar_path(&base.path))
        .ok()
        .and_then(|t| sha::parse_sidecar(&t, &base.name));
    let ok = sidecar.as_deref() == Some(actual.as_str()) && m.sha256 == actual;
    Ok((actual, ok))
}

/// The base backups of `dir` with a sidecar and a readable manifest, newest first.
pub fn good(dir: &Path, tz: Tz) -> Vec<(DumpFile, BaseManifest)> {
    list(dir, tz)
        .into_iter()
        .filter(layout::has_sidecar)
        .filter_map(|d| read(&d.path).map(|m| (d, m)))
        .collect()
}

pub fn read(base: &Path) -> Option<BaseManifest> {
    let text = fs::read_to_string(super::manifest::path(base)).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn write(base: &Path, m: &BaseManifest) -> io::Result<()> {
    let mut text = serde_json::to_vec_pretty(m).map_err(io::Error::other)?;
    text.push(b'\n');
    layout::write_atomic(&super::manifest::path(base), &text)
}

/// Counts and hashes what passes through.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
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

/// Counts what passes through.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What `pack` wrote: sha256 and size of the archive, and the size of the tar inside.
pub struct Packed {
    pub sha256: String,
    pub bytes: u64,
    pub uncompressed: u64,
}

/// Writes the folder `src` as a zstd-compressed tar to the new file `out` (fsynced, mode
/// 0640), hashing it on the way: one pass, no second read.
pub fn pack(src: &Path, out: &Path, level: i32) -> io::Result<Packed> {
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)?;
    let hashing = Hashing {
        inner: io::BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut enc = zstd::stream::write::Encoder::new(hashing, level)?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    if workers > 1 {
        enc.multithread(workers)?;
    }
    let counting = Counting {
        inner: enc,
        bytes: 0,
    };
    let mut tar = tar::Builder::new(counting);
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Complete);
    tar.append_dir_all(".", src)?;
    let counting = tar.into_inner()?;
    let uncompressed = counting.bytes;
    let hashing = counting.inner.finish()?;
    let Hashing {
        inner,
        hasher,
        bytes,
    } = hashing;
    let file = inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(Packed {
        sha256: sha::hex(&hasher.finalize()),
        bytes,
        uncompressed,
    })
}

/// Unpacks a base backup into `into` (an empty folder), modes as they were.
pub fn unpack(archive: &Path, into: &Path) -> io::Result<()> {
    let dec = zstd::stream::read::Decoder::new(File::open(archive)?)?;
    let mut tar = tar::Archive::new(dec);
    tar.set_preserve_permissions(true);
    tar.set_overwrite(false);
    tar.unpack(into)
}

/// The base backup that restores to `at`: the newest that finished before it (`None`: the
/// newest of all).
pub fn choose(
    bases: &[(DumpFile, BaseManifest)],
    at: Option<DateTime<Utc>>,
) -> Option<&(DumpFile, BaseManifest)> {
    bases
        .iter()
        .filter(|(_, m)| match (at, m.finished()) {
            (None, _) => true,
            (Some(at), Some(f)) => f < at,
            (Some(_), None) => false,
        })
        .max_by_key(|(d, m)| (m.finished(), d.taken, d.seq))
}

/// Deletes the archived WAL no kept base of `base_dir` needs. Without a good base, nothing.
pub fn prune_archive(base_dir: &Path, wal_dir: &Path, tz: Tz) -> Result<usize, String> {
    let bases = good(base_dir, tz);
    let Some(oldest) = bases
        .iter()
        .filter_map(|(_, m)| m.start())
        .map(|(_, n)| n)
        .min()
    else {
        return Ok(0);
    };
    let size = bases[0].1.wal_segment_size;
    let files = wal::list(wal_dir);
    let mut n = 0;
    for f in wal::prunable(&files, oldest, size) {
        fs::remove_file(&f.path).map_err(|e| format!("cannot delete {}: {e}", f.path.display()))?;
        n += 1;
    }
    if n > 0 {
        let _ = layout::fsync_dir(wal_dir);
    }
    Ok(n)
}

/// What a WAL archive holds, measured from the bases of `base_dir`.
pub struct Survey {
    pub files: Vec<wal::Archived>,
    /// From the oldest kept base to the newest segment (`None`: no base yet).
    pub gaps: Option<wal::Gaps>,
    pub newest: Option<wal::Archived>,
}

/// Reads the archive `wal_dir` against the bases of `base_dir`.
pub fn survey(base_dir: &Path, wal_dir: &Path, tz: Tz) -> Survey {
    let bases = good(base_dir, tz);
    let files = wal::list(wal_dir);
    let size = bases
        .first()
        .map(|(_, m)| m.wal_segment_size)
        .or_else(|| {
            files
                .iter()
                .find(|f| matches!(f.kind, wal::WalName::Segment { .. }))
                .and_then(|f| wal::content_size(&f.path))
        })
        .unwrap_or(16 << 20);
    let start = bases
        .iter()
        .filter_map(|(_, m)| m.start())
        .min_by_key(|s| s.1);
    let gaps = start.map(|s| wal::gaps(&files, s, size));
    let newest = wal::newest_segment(&files, size).cloned();
    Survey {
        files,
        gaps,
        newest,
    }
}

/// The folder `pg_basebackup` writes into before the tar is made: hidden, named like a
/// temporary file so a later run removes it when its writer is gone.
pub fn work_dir(dir: &Path, stem: &str) -> PathBuf {
    layout::temp_path(&dir.join(format!("{stem}.d")))
}
