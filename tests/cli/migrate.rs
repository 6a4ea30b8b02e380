//! `backups migrate`: a synthetic legacy folder (dated names, undated names, junk, a name
//! collision) moves into the layout; a second run is a no-op; `--dry-run` changes nothing.

use std::collections::BTreeMap;
use std::path::Path;

use crate::harness::Workspace;

const PLAN: &str = r#"plan crm {
    base "backups"
    timezone "Europe/Prague"
}"#;

/// Every file under `dir` with its content hash: the tree's fingerprint.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(
                    rel,
                    format!(
                        "{:x}",
                        bytes.iter().fold(0u64, |h, b| h
                            .wrapping_mul(1_099_511_628_211)
                            .wrapping_add(*b as u64))
                    ),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn legacy(ws: &Workspace) {
    let gz = |text: &str| {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    let write = |name: &str, bytes: &[u8]| {
        std::fs::create_dir_all(ws.path("old")).unwrap();
        std::fs::write(ws.path("old").join(name), bytes).unwrap();
    };
    write("crm-2024-01-02.sql.gz", &gz("one"));
    write("backup_20240102_0300.sql.gz", &gz("two"));
    write("2024-01-02T03:00.sql.gz", &gz("three: same minute as two"));
    write("dump.sql.gz", &gz("undated: named by its mtime"));
    write("snapshot-2024-01-02.txt", b"abcd1234\n");
    write("verify-20240107_0315.log", b"result: ok\n");
    write("verify-20240114_0315-fail.log", b"result: failed\n");
    write("weekly-report-2024-01-08.md", b"# report\n");
    write("notes.txt", b"not a backup\n");
    write("crm.sql", b"uncompressed: not ours to touch\n");
    // The undated dump's mtime: 2024-02-03 04:05 UTC (05:05 in Prague).
    let f = std::fs::File::options()
        .write(true)
        .open(ws.path("old/dump.sql.gz"))
        .unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_706_933_100))
        .unwrap();
}

#[test]
fn a_legacy_folder_moves_into_the_layout_once() {
    let ws = Workspace::with_plan(PLAN);
    legacy(&ws);
    let before = tree(ws.dir.path());

    let dry = ws.run(&["backups", "migrate", "--from", "old", "--dry-run"]);
    assert_eq!(dry.code(), 0, "{}", dry.stderr());
    assert_eq!(tree(ws.dir.path()), before, "--dry-run changed files");
    assert!(!ws.path("state/ops.db").exists() || ws.activities().is_empty());
    assert_eq!(
        dry.stdout(),
        "FROM                           TO                                    KIND             DATED BY\n\
         2024-01-02T03:00.sql.gz        db/full-20240102-0300.sql.gz          dump             name\n\
         backup_20240102_0300.sql.gz    db/full-20240102-0300-2.sql.gz        dump             name\n\
         crm-2024-01-02.sql.gz          db/full-20240102-0000.sql.gz          dump             name\n\
         dump.sql.gz                    db/full-20240203-0505.sql.gz          dump             mtime\n\
         snapshot-2024-01-02.txt        snapshots/snapshot-20240102-0000.txt  snapshot marker  name\n\
         verify-20240107_0315.log       verify/verify-20240107-0315.log       verify log       name\n\
         verify-20240114_0315-fail.log  verify/verify-20240114-0315-fail.log  verify log       name\n\
         weekly-report-2024-01-08.md    reports/backup-report-20240108.md     report           name\n\
         left alone (not recognised):\n\
         \x20 old/crm.sql\n\
         \x20 old/notes.txt\n\
         dry run: nothing was changed\n"
    );

    let r = ws.run(&["backups", "migrate", "--from", "old"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let after = tree(&ws.path("backups"));
    let names: Vec<&str> = after.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            ".ops-run-state",
            "db/full-20240102-0000.sql.gz",
            "db/full-20240102-0000.sql.gz.sha256",
            "db/full-20240102-0300-2.sql.gz",
            "db/full-20240102-0300-2.sql.gz.sha256",
            "db/full-20240102-0300.sql.gz",
            "db/full-20240102-0300.sql.gz.sha256",
            "db/full-20240203-0505.sql.gz",
            "db/full-20240203-0505.sql.gz.sha256",
            "reports/backup-report-20240108.md",
            "snapshots/snapshot-20240102-0000.txt",
            "verify/verify-20240107-0315.log",
            "verify/verify-20240114-0315-fail.log",
        ]
    );
    // Sidecars verify with sha256sum; the junk stayed where it was.
    let ok = std::process::Command::new("sh")
        .args(["-c", "sha256sum -c *.sha256"])
        .current_dir(ws.path("backups/db"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let left: Vec<String> = tree(&ws.path("old")).into_keys().collect();
    assert_eq!(left, ["crm.sql", "notes.txt"]);
    let moves = ws.activities();
    assert_eq!(moves.len(), 8);
    assert!(
        moves
            .iter()
            .all(|a| a["type"] == "migrate" && a["status"] == "success")
    );

    // A second run finds nothing to do and changes nothing.
    let snapshot = tree(ws.dir.path());
    let again = ws.run(&["backups", "migrate", "--from", "old"]);
    assert_eq!(again.code(), 0);
    assert!(
        again.stdout().starts_with("nothing to migrate in old\n"),
        "{}",
        again.stdout()
    );
    let mut now = tree(ws.dir.path());
    let mut was = snapshot;
    // The state database's own files change when it is opened; the backups do not.
    now.retain(|k, _| !k.starts_with("state/"));
    was.retain(|k, _| !k.starts_with("state/"));
    assert_eq!(now, was);
    assert_eq!(ws.activities().len(), 8);
}

#[test]
fn migrate_never_overwrites_a_file_already_in_the_layout() {
    let ws = Workspace::with_plan(PLAN);
    ws.write("backups/db/full-20240102-0000.sql.gz", "already here");
    ws.write("old/crm-2024-01-02.sql.gz", "legacy");
    let r = ws.run(&["backups", "migrate", "--from", "old"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(
        std::fs::read_to_string(ws.path("backups/db/full-20240102-0000.sql.gz")).unwrap(),
        "already here"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path("backups/db/full-20240102-0000-2.sql.gz")).unwrap(),
        "legacy"
    );
}

#[test]
fn names_are_printed_escaped_and_symlinks_are_left_alone() {
    let ws = Workspace::with_plan(PLAN);
    ws.write(
        "old/evil\u{1b}[2J\nmoved 99 file(s) into x-2024-01-02.sql.gz",
        "legacy",
    );
    ws.write("old/notes\u{7}.txt", "junk");
    ws.write("elsewhere/crm-2024-03-04.sql.gz", "not in old");
    std::os::unix::fs::symlink(
        ws.path("elsewhere/crm-2024-03-04.sql.gz"),
        ws.path("old/link-2024-03-04.sql.gz"),
    )
    .unwrap();
    let r = ws.run(&["backups", "migrate", "--from", "old"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let out = r.stdout();
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    assert!(out.contains("evil\\u{1b}[2J\\nmoved 99"), "{out}");
    assert!(!out.lines().any(|l| l.starts_with("moved 99")), "{out}");
    // The symlink stays where it was, pointing at the same file.
    assert!(ws.path("old/link-2024-03-04.sql.gz").is_symlink());
    assert!(ws.path("elsewhere/crm-2024-03-04.sql.gz").exists());
}

#[test]
fn a_legacy_zstd_dump_keeps_its_compression_and_gets_a_sidecar() {
    let ws = Workspace::with_plan(PLAN);
    let bytes = zstd::encode_all(&b"SELECT 1;\n"[..], 3).unwrap();
    std::fs::create_dir_all(ws.path("old")).unwrap();
    std::fs::write(ws.path("old/crm-2024-05-06.sql.zst"), &bytes).unwrap();
    let r = ws.run(&["backups", "migrate", "--from", "old"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let moved = ws.path("backups/db/full-20240506-0000.sql.zst");
    assert_eq!(std::fs::read(&moved).unwrap(), bytes, "{}", r.stdout());
    let out = std::process::Command::new("sha256sum")
        .args(["-c", "full-20240506-0000.sql.zst.sha256"])
        .current_dir(ws.path("backups/db"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
