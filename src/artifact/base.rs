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
use super::seal::Key;
use super::{sha, wal};

pub const PREFIX: &str = "base-";
pub const SUFFIX: &str = ".tar.zst";
pub const EXT: &str = "tar.zst";
/// An encrypted base (`encrypt` on the step): the same tar, zstd, then age.
pub const SEALED_SUFFIX: &str = ".tar.zst.age";
pub const SEALED_EXT: &str = "tar.zst.age";

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
    /// An encrypted base: the recipients (`age1…`) it and its WAL were encrypted to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
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

/// The base backups of `dir` (plain and encrypted), newest first.
pub fn list(dir: &Path, tz: Tz) -> Vec<DumpFile> {
    let mut all = layout::list_stamped(dir, PREFIX, SUFFIX, tz);
    all.extend(layout::list_stamped(dir, PREFIX, SEALED_SUFFIX, tz));
    all.sort_by_key(|d| std::cmp::Reverse((d.taken, d.seq)));
    all
}

/// Whether a recovery from `base` needs the identity: the base is encrypted, or its archive
/// holds encrypted files (`encrypt` turned on since a plain base was taken).
pub fn encrypted(base: &Path, archive: Option<&Path>) -> bool {
    super::seal::sealed(base) || archive.is_some_and(wal::any_sealed)
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

type HashedFile = sha::Hashing<io::BufWriter<File>>;

/// The new file `out`, buffered, counting and hashing what is written to it.
fn hashed_file(out: &Path) -> io::Result<HashedFile> {
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)?;
    Ok(sha::Hashing::new(io::BufWriter::with_capacity(
        1 << 20,
        file,
    )))
}

/// The archive written: flushed, synced, its size and SHA-256, beside the size of the tar.
fn close(hashed: HashedFile, uncompressed: u64) -> io::Result<Packed> {
    let (inner, bytes, sha256) = hashed.into_parts();
    let file = inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(Packed {
        sha256,
        bytes,
        uncompressed,
    })
}

/// zstd at `level` on every core.
fn encoder<W: Write>(inner: W, level: i32) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut enc = zstd::stream::write::Encoder::new(inner, level)?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    if workers > 1 {
        enc.multithread(workers)?;
    }
    Ok(enc)
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
    let enc = encoder(hashed_file(out)?, level)?;
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
    close(counting.inner.finish()?, uncompressed)
}

/// Unpacks a base backup into `into` (an empty folder), modes as they were; an encrypted one
/// is decrypted with `key` as it is read.
pub fn unpack(archive: &Path, into: &Path, key: Option<&Key>) -> io::Result<()> {
    let file = File::open(archive)?;
    let plain: Box<dyn io::Read> = match (super::seal::sealed(archive), key) {
        (false, _) => Box::new(file),
        (true, Some(k)) => super::seal::open(file, k)?,
        (true, None) => {
            return Err(io::Error::other(format!(
                "{} is encrypted: an identity is needed to read it",
                archive.display()
            )));
        }
    };
    let dec = zstd::stream::read::Decoder::new(plain)?;
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
        // An encrypted segment's plaintext hash goes with it.
        let _ = fs::remove_file(wal::plain_hash_path(&f.path));
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

/// What the tar of a streamed base held, for the check against its own manifest.
#[derive(Default)]
pub struct Streamed {
    /// Every regular file by its path in the tar: size and SHA-256.
    pub files: std::collections::HashMap<String, (u64, String)>,
    pub label: Option<String>,
    pub manifest: Option<Vec<u8>>,
    pub pg_version: Option<String>,
    /// The WAL segments in `pg_wal/`, with their size.
    pub wal: Vec<(String, u64)>,
}

type Sealed = age::stream::StreamWriter<HashedFile>;

/// An encrypted base as `pg_basebackup --format=tar --pgdata=-` streams it: the tar goes
/// through zstd and age into the new file `out`, and, beside it, to a thread that reads the tar
/// and hashes every file it holds. No byte of the data directory reaches the disk in
/// plaintext (`pg_verifybackup` needs a plain folder: `Streamed::check` does its work here).
pub struct StreamPack {
    enc: zstd::stream::write::Encoder<'static, Sealed>,
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<io::Result<Streamed>>>,
    uncompressed: u64,
}

impl StreamPack {
    pub fn create(out: &Path, level: i32, to: &[age::x25519::Recipient]) -> io::Result<StreamPack> {
        let enc = encoder(super::seal::seal(hashed_file(out)?, to)?, level)?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(16);
        let reader = std::thread::Builder::new()
            .name("base-tar".into())
            .spawn(move || {
                let mut archive = tar::Archive::new(Channel {
                    rx,
                    current: Vec::new(),
                    at: 0,
                });
                let read = read_tar(&mut archive);
                // Whatever follows (the tar's end blocks) is read too: the writer never waits.
                let mut rest = archive.into_inner();
                io::copy(&mut rest, &mut io::sink())?;
                read
            })?;
        Ok(StreamPack {
            enc,
            tx: Some(tx),
            reader: Some(reader),
            uncompressed: 0,
        })
    }

    pub fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.enc.write_all(chunk)?;
        self.uncompressed += chunk.len() as u64;
        if let Some(tx) = &self.tx {
            tx.send(chunk.to_vec())
                .map_err(|_| io::Error::other("the tar reader stopped"))?;
        }
        Ok(())
    }

    /// Ends the stream: the file synced, with what the tar held.
    pub fn finish(mut self) -> io::Result<(Packed, Streamed)> {
        drop(self.tx.take());
        let streamed = match self.reader.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r?,
            _ => return Err(io::Error::other("the tar reader died")),
        };
        Ok((
            close(self.enc.finish()?.finish()?, self.uncompressed)?,
            streamed,
        ))
    }
}

/// A reader over the chunks sent to it; the end of the stream is the sender's drop.
struct Channel {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
}

impl io::Read for Channel {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            match self.rx.recv() {
                Ok(next) => {
                    self.current = next;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn read_tar(archive: &mut tar::Archive<Channel>) -> io::Result<Streamed> {
    let mut out = Streamed::default();
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.to_string_lossy().into_owned();
        let path = path.trim_start_matches("./").to_string();
        let mut hasher = Sha256::new();
        let mut keep = Vec::new();
        let wanted = matches!(
            path.as_str(),
            "backup_label" | "backup_manifest" | "PG_VERSION"
        );
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let n = io::Read::read(&mut entry, &mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
            if wanted {
                keep.extend_from_slice(&buf[..n]);
            }
        }
        if let Some(name) = path.strip_prefix("pg_wal/")
            && wal::parse_name(name).is_some()
        {
            out.wal.push((name.to_string(), size));
        }
        match path.as_str() {
            "backup_label" => out.label = Some(String::from_utf8_lossy(&keep).into_owned()),
            "backup_manifest" => out.manifest = Some(keep),
            "PG_VERSION" => {
                out.pg_version = Some(String::from_utf8_lossy(&keep).trim().to_string())
            }
            _ => {}
        }
        out.files.insert(path, (size, sha::hex(&hasher.finalize())));
    }
    Ok(out)
}

impl Streamed {
    /// What `pg_verifybackup` checks of a plain base, checked on the stream: the manifest's
    /// own checksum, every file it lists present with its size and SHA-256, and the WAL from
    /// the start segment to the end segment in `pg_wal/`.
    pub fn check(&self, start_wal: &str, end_lsn: &str, segment_size: u64) -> Result<(), String> {
        let raw = self
            .manifest
            .as_ref()
            .ok_or("the tar holds no backup_manifest")?;
        let text = String::from_utf8_lossy(raw);
        let at = text
            .find("\"Manifest-Checksum\"")
            .ok_or("backup_manifest has no Manifest-Checksum")?;
        let manifest: serde_json::Value =
            serde_json::from_slice(raw).map_err(|e| format!("backup_manifest: {e}"))?;
        let claimed = manifest["Manifest-Checksum"].as_str().unwrap_or_default();
        if sha::hex(&Sha256::digest(&raw[..at])) != claimed {
            return Err("backup_manifest does not match its own checksum".into());
        }
        let files = manifest["Files"]
            .as_array()
            .ok_or("backup_manifest lists no files")?;
        // What the tar holds beyond the manifest, but what pg_verifybackup ignores too.
        let listed: std::collections::HashSet<&str> =
            files.iter().filter_map(|f| f["Path"].as_str()).collect();
        let ignored = |p: &str| {
            p.starts_with("pg_wal/")
                || matches!(
                    p,
                    "backup_manifest"
                        | "postgresql.auto.conf"
                        | "recovery.signal"
                        | "standby.signal"
                )
        };
        let mut extra: Vec<&str> = self
            .files
            .keys()
            .map(String::as_str)
            .filter(|p| !listed.contains(p) && !ignored(p))
            .collect();
        extra.sort_unstable();
        if let Some(first) = extra.first() {
            return Err(format!("{first} is in the backup, not in backup_manifest"));
        }
        for f in files {
            let path = f["Path"]
                .as_str()
                .ok_or("backup_manifest: a file without a plain Path")?;
            let size = f["Size"].as_u64().unwrap_or(u64::MAX);
            let sum = f["Checksum"].as_str().unwrap_or_default();
            match self.files.get(path) {
                None => return Err(format!("{path} is in backup_manifest, not in the backup")),
                Some((n, _)) if *n != size => {
                    return Err(format!("{path}: {n} bytes, backup_manifest says {size}"));
                }
                Some((_, h)) if f["Checksum-Algorithm"] == "SHA256" && h != sum => {
                    return Err(format!("{path}: its SHA-256 is not backup_manifest's"));
                }
                Some(_) => {}
            }
        }
        let (Some(first), Some(end)) = (wal::parse_name(start_wal), wal::parse_lsn(end_lsn)) else {
            return Err(format!(
                "cannot read the WAL range {start_wal} .. {end_lsn}"
            ));
        };
        let wal::WalName::Segment { tli, log, seg } = first else {
            return Err(format!("{start_wal} is not a segment"));
        };
        let from = wal::segno(log, seg, segment_size);
        // The end LSN lies in the last segment needed (at its very start: the one before).
        let to = (end.max(1) - 1) / segment_size.max(1);
        for n in from..=to.max(from) {
            let name = wal::segment_name(tli, n, segment_size);
            if !self
                .wal
                .iter()
                .any(|(w, size)| *w == name && *size == segment_size)
            {
                return Err(format!(
                    "the WAL segment {name} the base needs is not in it"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 16 << 20;

    /// A stream holding `files` and the manifest pg_basebackup writes for them, with the WAL
    /// of segments 2 and 3 on timeline 1.
    fn streamed(files: &[(&str, &[u8])]) -> Streamed {
        let mut s = Streamed::default();
        let mut listed = Vec::new();
        for (path, bytes) in files {
            let sum = sha::hex(&Sha256::digest(bytes));
            s.files
                .insert(path.to_string(), (bytes.len() as u64, sum.clone()));
            listed.push(format!(
                "{{ \"Path\": \"{path}\", \"Size\": {}, \"Last-Modified\": \"2026-12-07 00:00:00 GMT\", \"Checksum-Algorithm\": \"SHA256\", \"Checksum\": \"{sum}\" }}",
                bytes.len()
            ));
        }
        let body = format!(
            "{{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n{} ],\n\"WAL-Ranges\": [\n{{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/3000100\" }}\n],\n",
            listed.join(",\n")
        );
        let sum = sha::hex(&Sha256::digest(body.as_bytes()));
        s.manifest = Some(format!("{body}\"Manifest-Checksum\": \"{sum}\"}}\n").into_bytes());
        s.wal = vec![
            ("000000010000000000000002".into(), SEG),
            ("000000010000000000000003".into(), SEG),
        ];
        s
    }

    #[test]
    fn a_streamed_base_is_checked_against_its_manifest() {
        let files: &[(&str, &[u8])] = &[("PG_VERSION", b"15\n"), ("base/1/1259", b"rows")];
        let check = |s: &Streamed| s.check("000000010000000000000002", "0/3000100", SEG);
        check(&streamed(files)).unwrap();
        // A file changed, missing, or cut short; a manifest edited; a segment missing.
        let mut changed = streamed(files);
        changed.files.get_mut("base/1/1259").unwrap().1 = "00".repeat(32);
        assert!(check(&changed).unwrap_err().contains("base/1/1259"));
        let mut missing = streamed(files);
        missing.files.remove("PG_VERSION");
        assert!(check(&missing).unwrap_err().contains("not in the backup"));
        let mut short = streamed(files);
        short.files.get_mut("PG_VERSION").unwrap().0 = 2;
        assert!(check(&short).unwrap_err().contains("bytes"));
        let mut edited = streamed(files);
        let text = String::from_utf8(edited.manifest.take().unwrap()).unwrap();
        edited.manifest = Some(text.replace("\"Size\": 4", "\"Size\": 5").into_bytes());
        assert!(check(&edited).unwrap_err().contains("its own checksum"));
        let mut stray = streamed(files);
        stray
            .files
            .insert("base/1/9999".into(), (1, "00".repeat(32)));
        assert!(check(&stray).unwrap_err().contains("base/1/9999"));
        let mut ignored = streamed(files);
        ignored.files.insert(
            "pg_wal/000000010000000000000002".into(),
            (SEG, "00".repeat(32)),
        );
        check(&ignored).unwrap();
        let mut gap = streamed(files);
        gap.wal.pop();
        assert!(
            check(&gap)
                .unwrap_err()
                .contains("000000010000000000000003")
        );
    }
}
