//! `encrypt { recipient … }`: a dump written as an age file to public keys. No plaintext byte
//! reaches the backup folder (scanned while the dump runs and after); the file decrypts with
//! the `age` tool and ops-run reads files `age` made; verify and restore decrypt with the
//! identity given to them only; a plan whose verify has none is refused; a flipped byte is
//! refused on the checksum before anything is imported.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::harness::Workspace;

/// A value every row of the source holds: found anywhere under the backups, it leaked.
const CANARY: &str = "canary-5e1f9b-plaintext";

/// A new age identity in `dir/NAME` (by Debian's `age-keygen`) and its recipient.
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .expect("age-keygen (Debian package age; scripts/test installs it)");
    assert!(out.status.success(), "{out:?}");
    let out = Command::new("age-keygen")
        .arg("-y")
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    (
        key,
        String::from_utf8(out.stdout).unwrap().trim().to_string(),
    )
}

fn plan(recipient: &str, identity: &str) -> String {
    format!(
        r#"plan app {{
            base "backups"
            database main {{
                engine sqlite
                path "app.db"
            }}
            dump db {{
                database main
                compression "zstd"
                encrypt {{
                    recipient "{recipient}"
                }}
            }}
            verify restore {{
                dump db
                {identity}
                min-tables 1
                expect "SELECT count(*) FROM notes WHERE body LIKE 'canary-%'" min=200000
            }}
            drill rehearsal {{
                dump db
                {identity}
            }}
        }}"#
    )
}

fn workspace() -> (Workspace, PathBuf, String) {
    let ws = Workspace::new();
    let (key, recipient) = keygen(ws.dir.path(), "restore.key");
    ws.write(
        "plans/main.kdl",
        &plan(&recipient, &format!("identity file=\"{}\"", key.display())),
    );
    let conn = rusqlite::Connection::open(ws.path("app.db")).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
         INSERT INTO notes (body) SELECT '{CANARY}-' || i FROM n;"
    ))
    .unwrap();
    (ws, key, recipient)
}

/// Every file under `dir` (hidden temporary files included) that holds `needle`.
fn holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            found.extend(holding(&p, needle));
        } else if let Ok(mut f) = std::fs::File::open(&p) {
            let mut bytes = Vec::new();
            let _ = f.read_to_end(&mut bytes);
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(p);
            }
        }
    }
    found
}

fn the_dump(ws: &Workspace) -> PathBuf {
    let mut dumps: Vec<PathBuf> = std::fs::read_dir(ws.path("backups/db"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".sql.zst.age"))
        .collect();
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    dumps.pop().unwrap()
}

/// `age -d -i KEY FILE`: the plaintext (compressed) dump.
fn age_decrypt(key: &Path, file: &Path) -> Vec<u8> {
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(key)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn sha256sum_c(dir: &Path, sidecar: &str) {
    let out = Command::new("sha256sum")
        .args(["-c", sidecar])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn an_encrypted_dump_holds_no_plaintext_and_restores_with_the_identity_only() {
    let (ws, key, recipient) = workspace();
    let show = ws.run(&["plan", "show"]).stdout();
    assert!(
        show.contains("encrypt") && show.contains(&recipient),
        "{show}"
    );

    // The backup folder, scanned while the dump is written and after.
    let backups = ws.path("backups");
    let stop = Arc::new(AtomicBool::new(false));
    let scanner = {
        let (stop, backups) = (Arc::clone(&stop), backups.clone());
        std::thread::spawn(move || {
            let mut leaks = Vec::new();
            let mut scans = 0;
            while !stop.load(Ordering::SeqCst) {
                leaks.extend(holding(&backups, CANARY.as_bytes()));
                scans += 1;
            }
            (leaks, scans)
        })
    };
    let r = ws.run_at("2026-12-07T02:00:00Z", &["run", "db"]);
    stop.store(true, Ordering::SeqCst);
    let (leaks, scans) = scanner.join().unwrap();
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(scans > 1, "the scan ran while the dump was written");
    assert!(
        leaks.is_empty(),
        "plaintext on disk during the dump: {leaks:?}"
    );
    assert!(holding(&backups, CANARY.as_bytes()).is_empty());

    // An ordinary age file with an ordinary sidecar.
    let dump = the_dump(&ws);
    let name = dump.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("full-20261207-0200"), "{name}");
    let dir = ws.path("backups/db");
    sha256sum_c(&dir, &format!("{name}.sha256"));
    let plain = age_decrypt(&key, &dump);
    let sql = zstd::decode_all(&plain[..]).unwrap();
    let sql = String::from_utf8(sql).unwrap();
    assert!(
        sql.contains(&format!("{CANARY}-199999")),
        "the rows are inside"
    );
    // The manifest: the sidecar's hash is of the encrypted file, the plaintext's beside it.
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("{name}.manifest.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["encryption"]["plaintext_sha256"],
        crate::harness::sha256_hex(&plain)
    );
    assert_eq!(manifest["encryption"]["recipients"][0], recipient);
    assert_eq!(manifest["rows"], 200000);
    assert_eq!(
        manifest["sha256"],
        crate::harness::sha256_hex(&std::fs::read(&dump).unwrap())
    );

    // Verify decrypts with its identity, and counts every row against the manifest.
    let r = ws.run_at("2026-12-07T02:05:00Z", &["run", "restore"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let r = ws.run_at("2026-12-07T02:06:00Z", &["run", "rehearsal"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(holding(&backups, CANARY.as_bytes()).is_empty());
    // Restore: the plan's identity, or the one given.
    let r = ws.run(&["restore", "db", "app/db", "--to", "back.db"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let n: i64 = rusqlite::Connection::open(ws.path("back.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM notes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 200000);

    // Another identity does not open it, and says so.
    let (other, _) = keygen(ws.dir.path(), "other.key");
    let r = ws.run(&[
        "restore",
        "db",
        "app/db",
        "--to",
        "other.db",
        "--identity",
        other.to_str().unwrap(),
    ]);
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    assert!(r.stderr().contains("other recipients"), "{}", r.stderr());
    assert!(!ws.path("other.db").exists());

    // A file `age -r` made is read as well as ours.
    let out = Command::new("age")
        .args(["-r", &recipient, "-o"])
        .arg(&dump)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&plain)?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let sha = crate::harness::sha256_hex(&std::fs::read(&dump).unwrap());
    std::fs::write(
        dir.join(format!("{name}.sha256")),
        format!("{sha}  {name}\n"),
    )
    .unwrap();
    let r = ws.run_at("2026-12-07T02:10:00Z", &["run", "restore"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());

    // One flipped byte: refused on the checksum, nothing imported.
    let mut bytes = std::fs::read(&dump).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(&dump, &bytes).unwrap();
    let r = ws.run_at("2026-12-07T02:15:00Z", &["run", "restore"]);
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    let rows = ws.activities();
    let last = rows.last().unwrap();
    let log = last["log_excerpt"].as_str().unwrap_or_default();
    assert!(
        log.contains("checksum mismatch") && log.contains("not imported"),
        "{last}"
    );
    assert!(!log.contains("rows:"), "nothing was imported: {log}");

    // doctor: the identity is one of the dump's recipients; another one is a problem.
    let r = ws.run(&["doctor"]);
    assert!(
        r.stdout().contains("restore decrypts dump db"),
        "{}",
        r.stdout()
    );
    ws.write(
        "plans/main.kdl",
        &plan(
            &recipient,
            &format!("identity file=\"{}\"", other.display()),
        ),
    );
    let r = ws.run(&["doctor"]);
    assert_eq!(r.code(), 2, "{}", r.stdout());
    assert!(
        r.stdout()
            .contains("the identity of restore is not a recipient of dump db"),
        "{}",
        r.stdout()
    );

    // The identity's secret is nowhere in the log.
    let secret = std::fs::read_to_string(&key).unwrap();
    let secret = secret
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap();
    let all = ws
        .run(&["activities", "--json", "--limit", "1000"])
        .stdout();
    assert!(!all.contains(secret));
}

#[test]
fn a_verify_without_identity_for_an_encrypted_dump_is_refused() {
    let ws = Workspace::new();
    let (_, recipient) = keygen(ws.dir.path(), "k");
    ws.write("plans/main.kdl", &plan(&recipient, ""));
    let r = ws.run(&["plan", "validate"]);
    assert_eq!(r.code(), 2, "{}{}", r.stdout(), r.stderr());
    let err = r.stderr();
    assert!(err.contains("main.kdl:"), "{err}");
    assert!(
        err.contains("which is encrypted") && err.contains("no identity"),
        "{err}"
    );
    assert!(
        err.contains("identity file=") && err.contains("another host"),
        "{err}"
    );

    // A recipient with a typo, an identity written into the plan, an empty block.
    let typo = format!("{}x", &recipient[..recipient.len() - 1]);
    ws.write("plans/main.kdl", &plan(&typo, "identity file=\"/k\""));
    let r = ws.run(&["plan", "validate"]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().contains("is not an age recipient"),
        "{}",
        r.stderr()
    );
    ws.write(
        "plans/main.kdl",
        &plan(&recipient, "identity \"AGE-SECRET-KEY-1QQQ\""),
    );
    let r = ws.run(&["plan", "validate"]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().contains("an identity is a secret"),
        "{}",
        r.stderr()
    );
    let text =
        plan(&recipient, "identity file=\"/k\"").replace(&format!("recipient \"{recipient}\""), "");
    ws.write("plans/main.kdl", &text);
    let r = ws.run(&["plan", "validate"]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("names no recipient"), "{}", r.stderr());
    // Nothing ran.
    assert!(!ws.path("backups").exists());
}

#[test]
#[ignore = "needs PostgreSQL and age; run scripts/test"]
fn an_encrypted_postgres_dump_and_its_roles_restore_on_two_sessions() {
    use crate::engines::{fixture_copy, pg_counts, psql, run_ok, server_plan, unique, var};
    let src = unique("ops_encsrc");
    let dst = unique("ops_encdst");
    let _cleanup = crate::restore::drop_pg(&[&src, &dst]);
    fixture_copy(&src);
    let keys = tempfile::tempdir().unwrap();
    let (key, recipient) = keygen(keys.path(), "restore.key");
    // The dump (gzip, with its roles) and a verify of it, on two import sessions.
    let extra = format!(
        r#"globals #true
                encrypt {{
                    recipient "{recipient}"
                }}
            }}
            verify restore {{
                dump db
                identity file="{}"
                min-tables 40"#,
        key.display()
    );
    let ws = Workspace::with_plan(&server_plan("postgres", "PG", &src, &extra))
        .env("APP_DB_PASSWORD", &var("OPS_TEST_PG_PASSWORD"));
    let r = ws.run_at("2026-12-07T03:00:00Z", &["run", "db"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let dir = ws.path("backups/db");
    let dump = dir.join("full-20261207-0300.sql.gz.age");
    let roles = dir.join("globals-20261207-0300.sql.gz.age");
    assert!(
        dump.exists() && roles.exists(),
        "{:?}",
        std::fs::read_dir(&dir).unwrap().collect::<Vec<_>>()
    );
    sha256sum_c(&dir, "full-20261207-0300.sql.gz.age.sha256");
    sha256sum_c(&dir, "globals-20261207-0300.sql.gz.age.sha256");
    let mut sql = String::new();
    flate2::read::MultiGzDecoder::new(&age_decrypt(&key, &dump)[..])
        .read_to_string(&mut sql)
        .unwrap();
    assert!(sql.contains("PostgreSQL database dump complete"));
    let r = ws.run_at("2026-12-07T03:05:00Z", &["run", "restore"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let r = ws.run_at(
        "2026-12-07T03:10:00Z",
        &[
            "restore",
            "db",
            "db",
            "--to",
            &dst,
            "--with-globals",
            "--identity",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert_eq!(pg_counts(&dst), pg_counts(&src));
    let n = run_ok(psql("postgres").args([
        "-c",
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{dst}'"),
    ]));
    assert_eq!(n.trim(), "1");
}
