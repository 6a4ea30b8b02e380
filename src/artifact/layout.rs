//! The backup layout: names in the plan's time zone, hidden temporary files, atomic renames,
//! sidecars, and listing the dumps that are good.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::sha;

const TMP_MARK: &str = ".tmp.";

/// The folders of the layout that hold a step's own artifacts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Area {
    /// `db/`: dumps and their sidecars.
    Dumps,
    /// `snapshots/`: one marker per restic snapshot.
    Snapshots,
    /// `verify/`: the evidence log of each restore test (and a SQLite scratch copy).
    VerifyLogs,
    /// `base/<step>/`: PostgreSQL base backups (`base-….tar.zst`) and their sidecars.
    Base,
    /// `wal/<step>/`: archived WAL, written by the database server (`ops-run wal push`).
    Wal,
}

impl Area {
    /// The areas a plan's only writer keeps flat (`db/full-…`); base backups and WAL always
    /// have a folder per step.
    pub const ALL: [Area; 3] = [Area::Dumps, Area::Snapshots, Area::VerifyLogs];

    pub fn folder(self) -> &'static str {
        match self {
            Area::Dumps => "db",
            Area::Snapshots => "snapshots",
            Area::VerifyLogs => "verify",
            Area::Base => "base",
            Area::Wal => "wal",
        }
    }
}

/// Where `step` keeps its files of `area`: the area's folder itself when it is the plan's
/// only step writing there (the layout of the product brief, `db/full-…`), else a folder
/// named after the step (`db/<step>/full-…`), so two dumps never see each other's files.
/// `steps`: every step of the plan with the area it writes into.
pub fn step_dir<'s>(
    base: &Path,
    steps: impl IntoIterator<Item = (&'s str, Option<Area>)>,
    step: &str,
    area: Area,
) -> PathBuf {
    let root = base.join(area.folder());
    if matches!(area, Area::Base | Area::Wal) {
        return root.join(step);
    }
    let writers = steps.into_iter().filter(|(_, a)| *a == Some(area)).count();
    if writers > 1 { root.join(step) } else { root }
}

/// Every folder of `area` the plan's steps write into (for the orphan sweep).
pub fn area_dirs<'s>(
    base: &Path,
    steps: impl IntoIterator<Item = (&'s str, Option<Area>)> + Clone,
    area: Area,
) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = steps
        .clone()
        .into_iter()
        .filter(|(_, a)| *a == Some(area))
        .map(|(name, _)| step_dir(base, steps.clone(), name, area))
        .collect();
    dirs.dedup();
    dirs
}

/// `full-YYYYmmdd-HHMM` in the plan's time zone.
pub fn stamp_name(prefix: &str, at: DateTime<Utc>, tz: Tz) -> String {
    format!("{prefix}-{}", at.with_timezone(&tz).format("%Y%m%d-%H%M"))
}

/// A final path that does not exist yet: `STEM.EXT`, else `STEM-N.EXT` with N one more than the
/// highest counter of that stem in `dir`. Names only grow within a minute: a freed `STEM.EXT`
/// (pruned) is never reused, so a newer dump never sorts before an older one.
pub fn unique_path(dir: &Path, stem: &str, ext: &str) -> PathBuf {
    unique_path_besides(dir, stem, ext, &[])
}

/// Like `unique_path`, also counting names already promised to other files (`taken`).
pub fn unique_path_besides(dir: &Path, stem: &str, ext: &str, taken: &[PathBuf]) -> PathBuf {
    let plain = format!("{stem}.{ext}");
    let counter = |name: &str| -> Option<u32> {
        if name == plain {
            return Some(1);
        }
        name.strip_prefix(stem)?
            .strip_prefix('-')?
            .strip_suffix(ext)?
            .strip_suffix('.')?
            .parse()
            .ok()
            .filter(|&n| n >= 2)
    };
    let on_disk = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned());
    let promised = taken
        .iter()
        .filter(|p| p.parent() == Some(dir))
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    match on_disk.chain(promised).filter_map(|n| counter(&n)).max() {
        None => dir.join(plain),
        Some(highest) => dir.join(format!("{stem}-{}.{ext}", highest + 1)),
    }
}

/// Renames `from` to `to` unless `to` exists (`AlreadyExists` then): `RENAME_NOREPLACE`, or a
/// hard link and an unlink where the file system lacks it. Never replaces another's file.
pub fn rename_new(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes a new file at `path` (complete before it has its name), or `AlreadyExists`.
pub fn write_new_exclusive(path: &Path, text: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(text)?;
        f.sync_all()?;
        rename_new(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Gives the finished file `tmp` its final name `STEM[-N].EXT` in `dir`, one that no other
/// file has: a name another process took meanwhile is skipped, never replaced.
pub fn claim(tmp: &Path, dir: &Path, stem: &str, ext: &str) -> io::Result<PathBuf> {
    claim_besides(tmp, dir, stem, ext, &[])
}

/// `claim`, also counting `taken` as names in use (a dump's name under the other compression:
/// two dumps of one minute never share a time and counter).
pub fn claim_besides(
    tmp: &Path,
    dir: &Path,
    stem: &str,
    ext: &str,
    taken: &[PathBuf],
) -> io::Result<PathBuf> {
    for _ in 0..1000 {
        let path = unique_path_besides(dir, stem, ext, taken);
        match rename_new(tmp, &path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "no free name for {stem}.{ext} in {}",
        dir.display()
    )))
}

/// Writes `text` to a new file `STEM[-N].EXT` in `dir` (through a temporary file, fsync and a
/// rename that never replaces); returns its path.
pub fn write_new(dir: &Path, stem: &str, ext: &str, text: &[u8]) -> io::Result<PathBuf> {
    let tmp = temp_path(&dir.join(format!("{stem}.{ext}")));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(text)?;
        f.sync_all()?;
        let path = claim(&tmp, dir, stem, ext)?;
        fsync_dir(dir)?;
        Ok(path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A hidden temporary file beside `final_path`, named with our pid so a later run can tell
/// an orphan (its process gone) from a file still being written, and a counter so two threads
/// of one process never share one: `.NAME.tmp.PID.N`.
pub fn temp_path(final_path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    final_path.with_file_name(format!(".{name}{TMP_MARK}{}.{n}", std::process::id()))
}

/// Removes temporary files left in `dir` by processes that no longer run. Returns them.
pub fn remove_orphans(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return removed;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            continue;
        }
        let Some((_, owner)) = name.rsplit_once(TMP_MARK) else {
            continue;
        };
        // `PID.N`, or `PID` as older versions wrote it.
        let (pid, n) = owner.split_once('.').unwrap_or((owner, "1"));
        let (Ok(pid), Ok(_)) = (pid.parse::<u32>(), n.parse::<u64>()) else {
            continue;
        };
        if !crate::exec::escape::still_running(pid) && fs::remove_file(e.path()).is_ok() {
            removed.push(e.path());
        }
    }
    removed
}

pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `text` to `path` through a temporary file, fsync and rename.
pub fn write_atomic(path: &Path, text: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(text)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // `report.md` has the parent "": the working directory.
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        fsync_dir(dir.unwrap_or(Path::new(".")))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A dump file of the layout: `full-YYYYmmdd-HHMM[-N].sql.gz`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpFile {
    pub path: PathBuf,
    pub name: String,
    /// When the dump was taken (from its name, read in the plan's time zone).
    pub taken: DateTime<Utc>,
    /// Same-minute counter from the name (1 when absent).
    pub seq: u32,
}

/// Parses a layout dump name (`.sql.gz` or `.sql.zst`); anything else is `None` (and is
/// never touched).
pub fn parse_dump_name(name: &str, tz: Tz) -> Option<(DateTime<Utc>, u32)> {
    let form = super::codec::Form::of_name(name)?;
    parse_stamped(name, "full-", form.suffix(), tz)
}

/// Parses `PREFIX` + `YYYYmmdd-HHMM` [+ `-N`] + `SUFFIX` in the plan's time zone.
pub fn parse_stamped(
    name: &str,
    prefix: &str,
    suffix: &str,
    tz: Tz,
) -> Option<(DateTime<Utc>, u32)> {
    let rest = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    let date = rest.get(..13)?;
    let seq = match rest.get(13..)? {
        "" => 1,
        n => n.strip_prefix('-')?.parse().ok().filter(|&n| n >= 2)?,
    };
    if date.as_bytes().get(8) != Some(&b'-')
        || !date
            .chars()
            .enumerate()
            .all(|(i, c)| i == 8 || c.is_ascii_digit())
    {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(date, "%Y%m%d-%H%M").ok()?;
    let local = tz.from_local_datetime(&naive).earliest()?;
    Some((local.with_timezone(&Utc), seq))
}

/// Every layout dump in `dir`, gzip and zstd alike, newest first (by time in the name, then
/// counter): a plan that changes its compression keeps its history.
pub fn list_dumps(dir: &Path, tz: Tz) -> Vec<DumpFile> {
    let mut all: Vec<DumpFile> = super::codec::Form::ALL
        .iter()
        .flat_map(|c| list_stamped(dir, "full-", c.suffix(), tz))
        .collect();
    all.sort_by_key(|d| std::cmp::Reverse((d.taken, d.seq)));
    all
}

/// The newest good dump of `dir` dated at or before `now` and the newest dated after it,
/// across both compressions (see `newest_stamped`).
pub fn newest_dump(
    dir: &Path,
    tz: Tz,
    now: DateTime<Utc>,
    keep: impl Fn(&DumpFile) -> bool,
) -> (Option<DumpFile>, Option<DumpFile>) {
    let newer = |a: Option<DumpFile>, b: Option<DumpFile>| match (a, b) {
        (Some(a), Some(b)) => Some(if (b.taken, b.seq) > (a.taken, a.seq) {
            b
        } else {
            a
        }),
        (a, b) => a.or(b),
    };
    let (mut good, mut future) = (None, None);
    for c in super::codec::Form::ALL {
        let (g, f) = newest_stamped(dir, "full-", c.suffix(), tz, now, &keep);
        good = newer(good, g);
        future = newer(future, f);
    }
    (good, future)
}

/// The dumps of `dir` that count as evidence, newest first: with a sidecar, and not dated
/// after `now`.
pub fn good_dumps(dir: &Path, tz: Tz, now: DateTime<Utc>) -> impl Iterator<Item = DumpFile> {
    list_dumps(dir, tz)
        .into_iter()
        .filter(move |d| d.taken <= now && sidecar_path(&d.path).exists())
}

type ListingCache = HashMap<(PathBuf, String, String), (SystemTime, Tz, Arc<Vec<DumpFile>>)>;

/// Every `PREFIX…SUFFIX` file of the layout in `dir`, newest first. A listing is reused while
/// the folder's modification time is unchanged (adding, removing or renaming a file changes
/// it), so a status page over 10,000 dumps does not re-read the folder on every request.
pub fn list_stamped(dir: &Path, prefix: &str, suffix: &str, tz: Tz) -> Vec<DumpFile> {
    listing(dir, prefix, suffix, tz).as_ref().clone()
}

/// The newest file of a listing dated at or before `now` that passes `keep`, and the newest
/// dated after `now` (never evidence), in one pass without copying the listing: the status
/// page and the metrics ask this of a folder of thousands of dumps on every request. The
/// listing is newest first, so the files from the future are the ones read before the answer.
pub fn newest_stamped(
    dir: &Path,
    prefix: &str,
    suffix: &str,
    tz: Tz,
    now: DateTime<Utc>,
    keep: impl Fn(&DumpFile) -> bool,
) -> (Option<DumpFile>, Option<DumpFile>) {
    let files = listing(dir, prefix, suffix, tz);
    let future = files.first().filter(|d| d.taken > now).cloned();
    let good = files
        .iter()
        .skip_while(|d| d.taken > now)
        .find(|d| keep(d))
        .cloned();
    (good, future)
}

fn listing(dir: &Path, prefix: &str, suffix: &str, tz: Tz) -> Arc<Vec<DumpFile>> {
    static CACHE: OnceLock<Mutex<ListingCache>> = OnceLock::new();
    let Ok(mtime) = fs::metadata(dir).and_then(|m| m.modified()) else {
        return Arc::new(Vec::new());
    };
    let key = (dir.to_path_buf(), prefix.to_string(), suffix.to_string());
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Ok(c) = cache.lock()
        && let Some((seen, seen_tz, files)) = c.get(&key)
        && *seen == mtime
        && *seen_tz == tz
        // A folder changed within the clock's granularity could change again unseen.
        && SystemTime::now().duration_since(mtime).is_ok_and(|d| d.as_secs() >= 2)
    {
        return Arc::clone(files);
    }
    let files = Arc::new(read_stamped(dir, prefix, suffix, tz));
    if let Ok(mut c) = cache.lock() {
        c.insert(key, (mtime, tz, Arc::clone(&files)));
    }
    files
}

fn read_stamped(dir: &Path, prefix: &str, suffix: &str, tz: Tz) -> Vec<DumpFile> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some((taken, seq)) = parse_stamped(&name, prefix, suffix, tz)
            && e.file_type().is_ok_and(|t| t.is_file())
        {
            out.push(DumpFile {
                path: e.path(),
                name,
                taken,
                seq,
            });
        }
    }
    out.sort_by_key(|d| std::cmp::Reverse((d.taken, d.seq)));
    out
}

/// Where a dump found damaged (its bytes no longer match its sidecar) is marked:
/// `DUMP.damaged`, holding what found it. The dump's health is critical while the marked dump
/// is there: a damaged file in the backups is news (a failing disk, a tampering hand), and an
/// older good dump must not hide it. Deleting the dump (or dumping anew and deleting it)
/// clears it.
pub fn damaged_path(dump: &Path) -> PathBuf {
    let mut s = dump.as_os_str().to_owned();
    s.push(".damaged");
    PathBuf::from(s)
}

/// Marks `dump` damaged (see `damaged_path`), unless it is gone.
pub fn mark_damaged(dump: &Path, why: &str) {
    if dump.exists() {
        let _ = write_atomic(&damaged_path(dump), format!("{}\n", why.trim()).as_bytes());
    }
}

/// The newest dump of `dir` that is marked damaged and still there, with why.
pub fn damaged_dump(dir: &Path, tz: Tz) -> Option<(String, String)> {
    super::codec::Form::ALL
        .iter()
        .flat_map(|c| listing(dir, "full-", &format!("{}.damaged", c.suffix()), tz).to_vec())
        .filter_map(|m| {
            let name = m.name.strip_suffix(".damaged")?.to_string();
            let dump = dir.join(&name);
            dump.exists().then(|| {
                let why = fs::read_to_string(&m.path).unwrap_or_default();
                (m.taken, m.seq, name, why.trim().to_string())
            })
        })
        .max_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)))
        .map(|(_, _, name, why)| (name, why))
}

/// The globals file that belongs to a dump: `full-X.sql.gz` → `globals-X.sql.gz`.
pub fn globals_path(dump: &Path) -> Option<PathBuf> {
    let name = dump.file_name()?.to_str()?;
    // The roles are always gzip, whatever the dump's compression, and encrypted with it.
    let form = super::codec::Form::of_name(name)?;
    let stamp = name.strip_prefix("full-")?.strip_suffix(form.suffix())?;
    let roles = super::codec::Form {
        codec: super::codec::Codec::Gzip,
        ..form
    };
    Some(dump.with_file_name(format!("globals-{stamp}{}", roles.suffix())))
}

pub fn sidecar_path(dump: &Path) -> PathBuf {
    let mut s = dump.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

/// A dump with a sidecar that names it: good enough for health, which must stay cheap (the
/// hash itself is checked by verify and retention).
pub fn has_sidecar(dump: &DumpFile) -> bool {
    fs::read_to_string(sidecar_path(&dump.path))
        .ok()
        .and_then(|t| sha::parse_sidecar(&t, &dump.name))
        .is_some()
}

/// A dump is good when its sidecar exists, names it, and its content matches the hash.
pub fn is_good(dump: &DumpFile) -> bool {
    let Ok(text) = fs::read_to_string(sidecar_path(&dump.path)) else {
        return false;
    };
    let Some(claimed) = sha::parse_sidecar(&text, &dump.name) else {
        return false;
    };
    sha::file_sha256(&dump.path).is_ok_and(|actual| actual == claimed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_final_name_is_claimed_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mine = d.join(".mine.tmp.1.1");
        fs::write(&mine, "mine").unwrap();
        fs::write(d.join("full-20260601-0200.sql.gz"), "theirs").unwrap();
        assert_eq!(
            rename_new(&mine, &d.join("full-20260601-0200.sql.gz"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::AlreadyExists
        );
        let got = claim(&mine, d, "full-20260601-0200", "sql.gz").unwrap();
        assert_eq!(got, d.join("full-20260601-0200-2.sql.gz"));
        assert_eq!(fs::read_to_string(&got).unwrap(), "mine");
        assert_eq!(
            fs::read_to_string(d.join("full-20260601-0200.sql.gz")).unwrap(),
            "theirs"
        );
        assert!(!mine.exists());
        let log = write_new(d, "verify-20260601-0200", "log", b"x").unwrap();
        let again = write_new(d, "verify-20260601-0200", "log", b"y").unwrap();
        assert_ne!(log, again);
        assert_eq!(fs::read_to_string(&log).unwrap(), "x");
    }

    #[test]
    fn dump_names_parse_in_the_plan_time_zone() {
        let tz: Tz = "Europe/Prague".parse().unwrap();
        let (t, seq) = parse_dump_name("full-20260101-0200.sql.gz", tz).unwrap();
        assert_eq!(t, Utc.with_ymd_and_hms(2026, 1, 1, 1, 0, 0).unwrap());
        assert_eq!(seq, 1);
        assert_eq!(
            parse_dump_name("full-20260101-0200-3.sql.gz", tz)
                .unwrap()
                .1,
            3
        );
        for bad in [
            "full-20260101-0200.sql",
            "full-2026011-0200.sql.gz",
            "x-20260101-0200.sql.gz",
            "full-20261301-0200.sql.gz",
            "full-20260101-0200-.sql.gz",
            ".full-20260101-0200.sql.gz.tmp.1",
        ] {
            assert!(parse_dump_name(bad, tz).is_none(), "{bad}");
        }
    }

    #[test]
    fn unique_names_and_orphans() {
        let dir = tempfile::tempdir().unwrap();
        let p = unique_path(dir.path(), "full-20260101-0200", "sql.gz");
        assert!(p.ends_with("full-20260101-0200.sql.gz"));
        fs::write(&p, "x").unwrap();
        assert!(
            unique_path(dir.path(), "full-20260101-0200", "sql.gz")
                .ends_with("full-20260101-0200-2.sql.gz")
        );
        // A freed plain name is not reused: the next name sorts after every earlier one.
        fs::remove_file(&p).unwrap();
        fs::write(dir.path().join("full-20260101-0200-2.sql.gz"), "x").unwrap();
        assert!(
            unique_path(dir.path(), "full-20260101-0200", "sql.gz")
                .ends_with("full-20260101-0200-3.sql.gz")
        );
        // Another stem's counters do not count.
        assert!(
            unique_path(dir.path(), "full-20260101-02", "sql.gz")
                .ends_with("full-20260101-02.sql.gz")
        );
        let orphan = dir.path().join(".full-20260101-0200.sql.gz.tmp.999999999");
        let ours = temp_path(&p);
        fs::write(&orphan, "half").unwrap();
        fs::write(&ours, "in progress").unwrap();
        assert_eq!(remove_orphans(dir.path()), vec![orphan.clone()]);
        assert!(!orphan.exists() && ours.exists());
    }
}
