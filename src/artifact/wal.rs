//! The WAL archive of a PostgreSQL server: `ops-run wal push` (the server's `archive_command`)
//! stores each file as `NAME.zst` — through a temporary file, fsync and a rename that never
//! replaces — and `wal fetch` (its `restore_command`) gives it back. Also the archive's
//! listing, the gaps between a base backup and the newest segment (timelines followed through
//! their `.history` files), and what retention may prune.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::layout;

/// What the archive holds under one name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WalName {
    /// `TTTTTTTTXXXXXXXXYYYYYYYY`: timeline, log and segment.
    Segment { tli: u32, log: u32, seg: u32 },
    /// `TTTTTTTT.history`: how timeline TTTTTTTT branched from its parents.
    History { tli: u32 },
    /// `…YYYYYYYY.XXXXXXXX.backup`: a base backup's label; `….partial`: the last segment of a
    /// timeline a promotion left.
    Other { tli: u32, log: u32, seg: u32 },
}

fn hex8(s: &str) -> Option<u32> {
    (s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(s, 16).ok())
        .flatten()
}

/// A name PostgreSQL archives, or `None` for anything else (a push of another name is refused:
/// `%f` never holds a path).
pub fn parse_name(name: &str) -> Option<WalName> {
    if let Some(t) = name.strip_suffix(".history") {
        return Some(WalName::History { tli: hex8(t)? });
    }
    let seg24 = |s: &str| -> Option<(u32, u32, u32)> {
        (s.len() == 24)
            .then(|| Some((hex8(&s[..8])?, hex8(&s[8..16])?, hex8(&s[16..])?)))
            .flatten()
    };
    if name.len() == 24 {
        let (tli, log, seg) = seg24(name)?;
        return Some(WalName::Segment { tli, log, seg });
    }
    if let Some(s) = name.strip_suffix(".partial") {
        let (tli, log, seg) = seg24(s)?;
        return Some(WalName::Other { tli, log, seg });
    }
    let s = name.strip_suffix(".backup")?;
    let (seg, offset) = s.split_once('.')?;
    hex8(offset)?;
    let (tli, log, seg) = seg24(seg)?;
    Some(WalName::Other { tli, log, seg })
}

/// The archived file of `name` in `dir`.
pub fn archived_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.zst"))
}

/// The archived file of `name` in `dir` when the archive is encrypted (`encrypt` on its
/// base-backup step): zstd, then age.
pub fn sealed_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.zst.age"))
}

/// Beside an encrypted file, the SHA-256 of the plaintext it holds: so that a push of the
/// same bytes again (PostgreSQL retries one whose answer it did not see) is told apart from
/// other bytes without the identity, which this host does not have.
pub fn plain_hash_path(archived: &Path) -> PathBuf {
    let mut s = archived.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

/// How a push ended well.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Stored,
    /// The archive already held these very bytes (PostgreSQL retries a push whose answer it
    /// did not see).
    AlreadyThere,
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("`{0}` is not a WAL file name PostgreSQL archives")]
    BadName(String),
    #[error(
        "the archive already holds a different {0}; it is never overwritten (two servers archiving into one folder, or a restored server that should not archive)"
    )]
    Differs(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{0} is not in the archive")]
    Missing(String),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> WalError + 'a {
    move |source| WalError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a whole (decompressed) archived file.
/// An encrypted one is decrypted with `key` (without one it cannot be read).
fn read_archived(path: &Path, key: Option<&super::seal::Key>) -> Result<Vec<u8>, WalError> {
    let f = File::open(path).map_err(io_err("cannot open", path))?;
    let plain: Box<dyn Read> = match (super::seal::sealed(path), key) {
        (false, _) => Box::new(f),
        (true, Some(k)) => super::seal::open(f, k).map_err(io_err("cannot decrypt", path))?,
        (true, None) => {
            let e = io::Error::other("it is encrypted and there is no identity here");
            return Err(io_err("cannot read", path)(e));
        }
    };
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(plain)
        .and_then(|mut d| d.read_to_end(&mut out))
        .map_err(io_err("cannot decompress", path))?;
    Ok(out)
}

/// Archives `source` as `name` into `dir` (which must exist: it is made by `plan apply` with
/// the modes the server's group needs, and a missing one means this is the wrong folder).
/// Files are written 0640, so the service's group reads what the server wrote.
pub fn push(
    dir: &Path,
    source: &Path,
    name: &str,
    to: Option<&[age::x25519::Recipient]>,
) -> Result<Pushed, WalError> {
    let kind = parse_name(name).ok_or_else(|| WalError::BadName(name.to_string()))?;
    // A timeline's history holds only where timelines branched (LSNs, no data): it stays
    // plain, so the archive's gap check can follow timelines without the identity.
    let to = to.filter(|_| !matches!(kind, WalName::History { .. }));
    if !dir.is_dir() {
        return Err(WalError::Io {
            what: "no archive folder",
            path: dir.to_path_buf(),
            source: io::Error::new(
                io::ErrorKind::NotFound,
                "run `ops-run plan apply` (or `ops-run doctor`) once to create it",
            ),
        });
    }
    let bytes = fs::read(source).map_err(io_err("cannot read", source))?;
    let plain = archived_path(dir, name);
    if plain.exists() {
        return same_or_differs(&plain, &bytes, name);
    }
    let sealed = sealed_path(dir, name);
    // Only for an encrypted archive: a plain push is not slowed by a hash it does not need.
    let plain_hash = || super::sha::hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    if sealed.exists() {
        let recorded = fs::read_to_string(plain_hash_path(&sealed)).unwrap_or_default();
        return match recorded.trim() == plain_hash() {
            true => Ok(Pushed::AlreadyThere),
            false => Err(WalError::Differs(name.to_string())),
        };
    }
    let target = match to {
        None => plain,
        Some(_) => {
            // The plaintext's hash first: an encrypted file never lacks it.
            layout::write_atomic(
                &plain_hash_path(&sealed),
                format!("{}\n", plain_hash()).as_bytes(),
            )
            .map_err(io_err("cannot write", dir))?;
            sealed
        }
    };
    let tmp = layout::temp_path(&target);
    let written = (|| -> io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o640))?;
        match to {
            None => compress(&mut f, &bytes)?,
            Some(to) => {
                let mut w = super::seal::seal(&mut f, to)?;
                compress(&mut w, &bytes)?;
                w.finish()?;
            }
        }
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(WalError::Io {
            what: "cannot write",
            path: tmp,
            source: e,
        });
    }
    match layout::rename_new(&tmp, &target) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let _ = fs::remove_file(&tmp);
            return same_or_differs(&target, &bytes, name);
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(WalError::Io {
                what: "cannot rename into",
                path: target,
                source: e,
            });
        }
    }
    layout::fsync_dir(dir).map_err(io_err("cannot sync", dir))?;
    Ok(Pushed::Stored)
}

/// zstd level 1 (a segment is compressed in about the time it takes to write it), with the
/// size in the frame header.
fn compress(out: &mut dyn Write, bytes: &[u8]) -> io::Result<()> {
    let mut enc = zstd::stream::write::Encoder::new(out, 1)?;
    enc.set_pledged_src_size(Some(bytes.len() as u64))?;
    enc.include_contentsize(true)?;
    enc.write_all(bytes)?;
    enc.finish().map(drop)
}

/// Whether the archive `dir` holds encrypted files (all of it, or since `encrypt` was turned on).
pub fn any_sealed(dir: &Path) -> bool {
    list(dir).iter().any(|f| super::seal::sealed(&f.path))
}

/// Writes every file of the archive `dir` into `into` as PostgreSQL wants it back (plain,
/// under its own name), decrypting with `key`: the restore of an encrypted archive, whose
/// `restore_command` then only copies. Returns how many files.
pub fn unseal_all(dir: &Path, into: &Path, key: &super::seal::Key) -> Result<usize, WalError> {
    fs::create_dir_all(into).map_err(io_err("cannot create", into))?;
    let mut n = 0;
    for f in list(dir) {
        let out = read_archived(&f.path, Some(key))?;
        let dest = into.join(&f.name);
        fs::write(&dest, &out).map_err(io_err("cannot write", &dest))?;
        n += 1;
    }
    Ok(n)
}

fn same_or_differs(target: &Path, bytes: &[u8], name: &str) -> Result<Pushed, WalError> {
    if read_archived(target, None)? == bytes {
        Ok(Pushed::AlreadyThere)
    } else {
        Err(WalError::Differs(name.to_string()))
    }
}

/// Restores the archived `name` to `dest` (PostgreSQL's `%p`); a name the archive does not
/// hold is `Missing` (the server asks for files that may not exist, such as the next
/// timeline's history).
pub fn fetch(dir: &Path, name: &str, dest: &Path) -> Result<(), WalError> {
    parse_name(name).ok_or_else(|| WalError::BadName(name.to_string()))?;
    let path = archived_path(dir, name);
    if !path.exists() {
        if sealed_path(dir, name).exists() {
            return Err(WalError::Io {
                what: "encrypted: `ops-run restore cluster --identity` decrypts",
                path: sealed_path(dir, name),
                source: io::Error::other("this command has no identity"),
            });
        }
        return Err(WalError::Missing(name.to_string()));
    }
    let bytes = read_archived(&path, None)?;
    let tmp = layout::temp_path(dest);
    let result = (|| -> io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, dest)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(WalError::Io {
            what: "cannot write",
            path: dest.to_path_buf(),
            source: e,
        });
    }
    Ok(())
}

/// One archived file.
#[derive(Clone, Debug)]
pub struct Archived {
    pub name: String,
    pub kind: WalName,
    pub path: PathBuf,
    pub modified: SystemTime,
}

/// Every archived file of `dir` (temporary and foreign files left out).
pub fn list(dir: &Path) -> Vec<Archived> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Archived> = entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let name = file
                .strip_suffix(".zst.age")
                .or_else(|| file.strip_suffix(".zst"))?
                .to_string();
            let kind = parse_name(&name)?;
            let modified = e.metadata().ok()?.modified().ok()?;
            Some(Archived {
                name,
                kind,
                path: e.path(),
                modified,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The newest archived segment: the highest position, then the highest timeline.
pub fn newest_segment(files: &[Archived], seg_size: u64) -> Option<&Archived> {
    files
        .iter()
        .filter_map(|f| match f.kind {
            WalName::Segment { tli, log, seg } => Some((segno(log, seg, seg_size), tli, f)),
            _ => None,
        })
        .max_by_key(|(n, t, _)| (*n, *t))
        .map(|(_, _, f)| f)
}

/// The segment number of `log`/`seg` with segments of `seg_size` bytes.
pub fn segno(log: u32, seg: u32, seg_size: u64) -> u64 {
    u64::from(log) * (0x1_0000_0000 / seg_size.max(1)) + u64::from(seg)
}

/// The file name of segment `n` on `tli`.
pub fn segment_name(tli: u32, n: u64, seg_size: u64) -> String {
    let per = 0x1_0000_0000 / seg_size.max(1);
    format!("{tli:08X}{:08X}{:08X}", n / per, n % per)
}

/// `X/Y` as PostgreSQL prints an LSN.
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// The timelines of a `.history` file: each ancestor and the LSN where its child began.
pub fn parse_history(text: &str) -> Vec<(u32, u64)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let tli = w.next()?.parse().ok()?;
            let lsn = parse_lsn(w.next()?)?;
            Some((tli, lsn))
        })
        .collect()
}

/// What a gap check found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Gaps {
    /// Missing files, by name, oldest first (at most `MAX_NAMED` of them).
    pub missing: Vec<String>,
    /// How many segments are missing in all.
    pub count: u64,
    /// The newest segment, where the check ended.
    pub newest: Option<String>,
}

const MAX_NAMED: usize = 5;

/// Every segment from `start` (the oldest kept base backup's first segment, on its timeline) to
/// the newest archived one must be there, each on the timeline that covers it; every timeline
/// after the first needs its `.history` file.
pub fn gaps(files: &[Archived], start: (u32, u64), seg_size: u64) -> Gaps {
    let mut out = Gaps::default();
    let have: BTreeSet<(u32, u64)> = files
        .iter()
        .filter_map(|f| match f.kind {
            WalName::Segment { tli, log, seg } => Some((tli, segno(log, seg, seg_size))),
            _ => None,
        })
        .collect();
    let histories: BTreeMap<u32, &Archived> = files
        .iter()
        .filter_map(|f| match f.kind {
            WalName::History { tli } => Some((tli, f)),
            _ => None,
        })
        .collect();
    let Some(newest) = newest_segment(files, seg_size) else {
        return out;
    };
    out.newest = Some(newest.name.clone());
    let WalName::Segment { tli: top, log, seg } = newest.kind else {
        return out;
    };
    let end = segno(log, seg, seg_size);
    // The timeline chain ending at `top`: (timeline, first segment it covers).
    let mut chain: Vec<(u32, u64)> = Vec::new();
    if top > 1 {
        match histories.get(&top) {
            None => out.missing.push(format!("{top:08X}.history")),
            Some(h) => {
                let text = read_archived(&h.path, None)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let entries = parse_history(&text);
                if entries.is_empty() {
                    out.missing.push(format!("{top:08X}.history (unreadable)"));
                }
                let mut begin = 0;
                for (tli, switch) in entries {
                    chain.push((tli, begin));
                    begin = switch / seg_size.max(1);
                }
                chain.push((top, begin));
            }
        }
    }
    if chain.is_empty() {
        chain.push((top, 0));
    }
    let tli_of = |n: u64| {
        chain
            .iter()
            .rev()
            .find(|(_, begin)| *begin <= n)
            .map_or(top, |(t, _)| *t)
    };
    // Timelines between the base's and the top need their own history files too.
    for &(tli, _) in &chain {
        if tli > 1 && tli != top && !histories.contains_key(&tli) {
            out.missing.push(format!("{tli:08X}.history"));
        }
    }
    let (_, from) = start;
    for n in from..=end {
        let tli = tli_of(n);
        if !have.contains(&(tli, n)) {
            out.count += 1;
            if out.missing.len() < MAX_NAMED {
                out.missing.push(segment_name(tli, n, seg_size));
            }
        }
    }
    out.count += out
        .missing
        .iter()
        .filter(|m| m.contains(".history"))
        .count() as u64;
    out
}

/// Archived files that no base backup from `start` on needs: segments, partial segments and
/// backup labels before it (history files are kept: they are tiny and recovery reads them).
pub fn prunable(files: &[Archived], start: u64, seg_size: u64) -> Vec<&Archived> {
    files
        .iter()
        .filter(|f| match f.kind {
            WalName::Segment { log, seg, .. } | WalName::Other { log, seg, .. } => {
                segno(log, seg, seg_size) < start
            }
            WalName::History { .. } => false,
        })
        .collect()
}

/// The uncompressed size zstd recorded for an archived segment (the server's segment size).
pub fn content_size(path: &Path) -> Option<u64> {
    let mut head = [0u8; 18];
    let n = File::open(path).ok()?.read(&mut head).ok()?;
    zstd::zstd_safe::get_frame_content_size(&head[..n])
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_what_postgres_archives_and_nothing_else() {
        assert_eq!(
            parse_name("000000010000000000000003"),
            Some(WalName::Segment {
                tli: 1,
                log: 0,
                seg: 3
            })
        );
        assert_eq!(
            parse_name("00000002.history"),
            Some(WalName::History { tli: 2 })
        );
        assert!(parse_name("000000010000000000000002.00000028.backup").is_some());
        assert!(parse_name("000000010000000000000005.partial").is_some());
        for bad in ["../etc/passwd", "00000001000000000000000", "x.history", ""] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn segment_numbers_round_trip_through_names() {
        let size = 16 << 20;
        let n = segno(0x1, 0xA5, size);
        assert_eq!(n, 256 + 0xA5);
        assert_eq!(segment_name(3, n, size), "0000000300000001000000A5");
        assert_eq!(parse_lsn("1/A5000028"), Some(0x1_A500_0028));
    }

    fn fake(dir: &Path, names: &[&str], history: Option<(&str, &str)>) -> Vec<Archived> {
        for n in names {
            fs::write(archived_path(dir, n), b"").unwrap();
        }
        if let Some((name, text)) = history {
            let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
            enc.write_all(text.as_bytes()).unwrap();
            fs::write(archived_path(dir, name), enc.finish().unwrap()).unwrap();
        }
        list(dir)
    }

    #[test]
    fn a_missing_segment_is_named_and_timelines_are_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let size = 16 << 20;
        let files = fake(
            tmp.path(),
            &[
                "000000010000000000000002",
                "000000010000000000000003",
                "000000010000000000000005",
                "000000020000000000000006",
                "000000020000000000000007",
            ],
            Some(("00000002.history", "1\t0/6000100\tbefore 2026-12-06\n")),
        );
        let g = gaps(&files, (1, 2), size);
        assert_eq!(g.missing, vec!["000000010000000000000004".to_string()]);
        assert_eq!(g.count, 1);
        assert_eq!(g.newest.as_deref(), Some("000000020000000000000007"));
        // Without the history file, the new timeline cannot be followed: named.
        fs::remove_file(archived_path(tmp.path(), "00000002.history")).unwrap();
        let g = gaps(&list(tmp.path()), (1, 2), size);
        assert!(g.missing.contains(&"00000002.history".to_string()), "{g:?}");
    }

    #[test]
    fn retention_prunes_only_what_no_kept_base_needs() {
        let tmp = tempfile::tempdir().unwrap();
        let files = fake(
            tmp.path(),
            &[
                "000000010000000000000001",
                "000000010000000000000002",
                "000000010000000000000002.00000028.backup",
                "000000010000000000000003",
                "000000010000000000000003.00000060.backup",
                "000000020000000000000004",
            ],
            Some(("00000002.history", "1\t0/4000000\tno reason\n")),
        );
        let mut gone: Vec<&str> = prunable(&files, 3, 16 << 20)
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        gone.sort();
        assert_eq!(
            gone,
            [
                "000000010000000000000001",
                "000000010000000000000002",
                "000000010000000000000002.00000028.backup"
            ]
        );
    }

    #[test]
    fn push_never_overwrites_and_fetch_gives_the_bytes_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        fs::create_dir(&dir).unwrap();
        let src = tmp.path().join("seg");
        fs::write(&src, vec![7u8; 100_000]).unwrap();
        let name = "000000010000000000000001";
        assert_eq!(push(&dir, &src, name, None).unwrap(), Pushed::Stored);
        assert_eq!(push(&dir, &src, name, None).unwrap(), Pushed::AlreadyThere);
        fs::write(&src, vec![8u8; 100_000]).unwrap();
        assert!(matches!(
            push(&dir, &src, name, None),
            Err(WalError::Differs(_))
        ));
        let back = tmp.path().join("back");
        fetch(&dir, name, &back).unwrap();
        assert_eq!(fs::read(&back).unwrap(), vec![7u8; 100_000]);
        assert_eq!(content_size(&archived_path(&dir, name)), Some(100_000));
        assert!(matches!(
            fetch(&dir, "00000009.history", &back),
            Err(WalError::Missing(_))
        ));
        assert!(matches!(
            push(&dir, &src, "../x", None),
            Err(WalError::BadName(_))
        ));
    }

    #[test]
    fn an_encrypted_push_is_told_apart_without_the_identity_and_unsealed_with_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        fs::create_dir(&dir).unwrap();
        let id = age::x25519::Identity::generate();
        let to = [id.to_public()];
        let src = tmp.path().join("seg");
        let segment: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(&src, &segment).unwrap();
        let name = "000000010000000000000001";
        assert_eq!(push(&dir, &src, name, Some(&to)).unwrap(), Pushed::Stored);
        let sealed = sealed_path(&dir, name);
        assert!(
            fs::read(&sealed)
                .unwrap()
                .starts_with(b"age-encryption.org/v1")
        );
        assert!(!archived_path(&dir, name).exists());
        // The same bytes again: told so by the plaintext's hash; others: refused.
        assert_eq!(
            push(&dir, &src, name, Some(&to)).unwrap(),
            Pushed::AlreadyThere
        );
        fs::write(&src, vec![8u8; 100_000]).unwrap();
        assert!(matches!(
            push(&dir, &src, name, Some(&to)),
            Err(WalError::Differs(_))
        ));
        assert_eq!(list(&dir).len(), 1, "the hash beside it is not a WAL file");
        // A history file stays readable: the gap check follows timelines with no identity.
        fs::write(&src, "1\t0/3000000\tno recovery target specified\n").unwrap();
        assert_eq!(
            push(&dir, &src, "00000002.history", Some(&to)).unwrap(),
            Pushed::Stored
        );
        assert!(archived_path(&dir, "00000002.history").exists());
        // fetch has no identity; the restore writes the archive back in plain with one.
        assert!(fetch(&dir, name, &tmp.path().join("back")).is_err());
        use age::secrecy::ExposeSecret;
        let key = crate::artifact::seal::Key::parse(id.to_string().expose_secret()).unwrap();
        let plain = tmp.path().join("plain");
        assert_eq!(unseal_all(&dir, &plain, &key).unwrap(), 2);
        assert_eq!(fs::read(plain.join(name)).unwrap(), segment);
    }
}
