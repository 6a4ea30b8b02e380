//! Offsite copies trust bytes, not names: a dump that no longer matches its sidecar is never
//! shipped and turns its health red; a dump is known at the destination by its sha256; a
//! freed name is never given again; a URL password with `@`, `:`, `/` or `%` never shows; a
//! failed repository check stays failed until the damaged part reads clean; a killed copy
//! leaves no restic running, and its stale lock does not refuse the next forget.

use std::process::Stdio;

use crate::copy::{check, everything, rclone, snapshots, tag, workspace};
use crate::harness::{Workspace, processes_with, signal, wait_for};

fn flip_a_byte(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

#[test]
#[ignore = "needs restic; run scripts/test"]
fn a_damaged_dump_is_never_shipped_and_copies_are_known_by_their_sha256() {
    let ws = workspace("offsite", "");
    let repo = ws.path("offsite").display().to_string();
    assert_eq!(ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]).code(), 0);
    assert_eq!(
        ws.run_at("2026-11-28T10:05:00Z", &["run", "offsite"])
            .code(),
        0
    );
    assert_eq!(snapshots(&ws, &repo).len(), 1);

    // The next dump is damaged on disk before it is copied: not shipped, the copy fails, and
    // the dump's health is critical although an older good dump exists.
    assert_eq!(ws.run_at("2026-11-28T11:00:00Z", &["run", "db"]).code(), 0);
    let damaged = ws.path("backups/db/full-20261128-1100.sql.gz");
    flip_a_byte(&damaged);
    let r = ws.run_at("2026-11-28T11:05:00Z", &["run", "offsite"]);
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    assert!(r.stdout().contains("checksum mismatch"), "{}", r.stdout());
    assert_eq!(snapshots(&ws, &repo).len(), 1, "a damaged dump was shipped");
    let c = check(&ws, "2026-11-28T11:06:00Z", "app/db");
    assert_eq!(
        (c["state"].as_str(), c["severity"].as_str()),
        (Some("fail"), Some("crit")),
        "{c}"
    );
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("full-20261128-1100.sql.gz is damaged"),
        "{c}"
    );

    // The operator deletes it; a new dump in the same minute never takes its freed name.
    for f in ["", ".sha256", ".damaged"] {
        std::fs::remove_file(ws.path(&format!("backups/db/full-20261128-1100.sql.gz{f}"))).unwrap();
    }
    assert_eq!(check(&ws, "2026-11-28T11:06:00Z", "app/db")["state"], "ok");
    rusqlite::Connection::open(ws.path("app.db"))
        .unwrap()
        .execute("INSERT INTO users (email) VALUES ('c@example.com')", [])
        .unwrap();
    let r = ws.run_at("2026-11-28T11:00:30Z", &["run", "db"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(!damaged.exists(), "a freed dump name was given again");
    assert!(ws.path("backups/db/full-20261128-1100-2.sql.gz").exists());

    // A destination holding a dump's name with other bytes does not hold that dump: the
    // first dump is replaced here by other content under its name (with a true sidecar).
    let first = ws.path("backups/db/full-20261128-1000.sql.gz");
    std::fs::copy(ws.path("backups/db/full-20261128-1100-2.sql.gz"), &first).unwrap();
    let sha = crate::harness::sha256_hex(&std::fs::read(&first).unwrap());
    ws.write(
        "backups/db/full-20261128-1000.sql.gz.sha256",
        &format!("{sha}  full-20261128-1000.sql.gz\n"),
    );
    let r = ws.run_at("2026-11-28T11:10:00Z", &["run", "offsite"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(
        r.stdout().contains("copied 2 dumps"),
        "{}\n{:?}",
        r.stdout(),
        snapshots(&ws, &repo)
            .iter()
            .map(|s| (tag(s, "dump"), tag(s, "sha256")))
            .collect::<Vec<_>>()
    );
    let shas: Vec<String> = snapshots(&ws, &repo)
        .iter()
        .filter(|s| tag(s, "dump").as_deref() == Some("full-20261128-1000.sql.gz"))
        .filter_map(|s| tag(s, "sha256"))
        .collect();
    assert_eq!(shas.len(), 2, "{shas:?}");
    assert!(shas.contains(&sha));
}

#[test]
#[ignore = "needs restic and rclone; run scripts/test"]
fn a_url_password_with_at_colon_and_percent_never_shows() {
    let user_pw = "Pw@Se:cr%21et";
    let dir = tempfile::tempdir().unwrap();
    // rclone checks the password restic sends, decoded: `%21` is `!`.
    let server = rclone(dir.path(), &["--user", "backup", "--pass", "Pw@Se:cr!et"]);
    let repository = format!("rest:http://backup:{user_pw}@127.0.0.1:{}/", server.port);
    let ws = workspace(&repository, "");
    assert_eq!(ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]).code(), 0);
    let r = ws.run_at("2026-11-28T10:05:00Z", &["run", "offsite"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let mut all = everything(&ws, "2026-11-28T10:06:00Z");
    all.push_str(&r.stdout());
    all.push_str(&r.stderr());
    for part in ["Se:cr", "Pw@Se", "cr!et", "cr%21et"] {
        assert!(!all.contains(part), "`{part}` of the password leaked");
    }
    assert!(
        all.contains("backup:***@127.0.0.1"),
        "the destination is named"
    );
    // And a failing run's error output, which restic fills with the URL.
    drop(server);
    let r = ws.run_at("2026-11-28T10:10:00Z", &["run", "offsite"]);
    assert_eq!(r.code(), 1);
    let all = everything(&ws, "2026-11-28T10:11:00Z") + &r.stdout() + &r.stderr();
    for part in ["Se:cr", "Pw@Se", "cr!et", "cr%21et"] {
        assert!(!all.contains(part), "`{part}` of the password leaked");
    }
}

#[test]
#[ignore = "needs restic; run scripts/test"]
fn a_failed_check_reads_the_same_part_again_until_it_passes() {
    let ws = workspace("offsite", "");
    let plan = std::fs::read_to_string(ws.path("plans/main.kdl")).unwrap();
    ws.write(
        "plans/main.kdl",
        &plan.replacen(
            "copy offsite {",
            "check offsite-check {\n                copy offsite\n                read-data-subset \"1/2\"\n            }\n            copy offsite {",
            1,
        ),
    );
    assert_eq!(ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]).code(), 0);
    assert_eq!(
        ws.run_at("2026-11-28T10:05:00Z", &["run", "offsite"])
            .code(),
        0
    );
    // Every pack damaged, its good bytes kept aside.
    let mut saved = Vec::new();
    for dir in std::fs::read_dir(ws.path("offsite/data"))
        .unwrap()
        .flatten()
    {
        for pack in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let bytes = std::fs::read(pack.path()).unwrap();
            let mut perms = std::fs::metadata(pack.path()).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(pack.path(), perms).unwrap();
            flip_a_byte(&pack.path());
            saved.push((pack.path(), bytes));
        }
    }
    let subset = |ws: &Workspace| -> Vec<(String, String)> {
        ws.activities()
            .into_iter()
            .filter(|a| a["type"] == "repo_check")
            .map(|a| {
                (
                    a["meta"]["subset"].as_str().unwrap_or("").to_string(),
                    a["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let r = ws.run_at("2026-11-28T11:00:00Z", &["run", "offsite-check"]);
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    // Still damaged: the same part again, still failed (not another part that reads clean).
    let r = ws.run_at("2026-11-28T12:00:00Z", &["run", "offsite-check"]);
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    assert_eq!(
        check(&ws, "2026-11-28T12:01:00Z", "app/offsite-check")["state"],
        "fail"
    );
    // Repaired: the same part reads clean, and then the turn goes on.
    for (path, bytes) in &saved {
        std::fs::write(path, bytes).unwrap();
    }
    for at in ["2026-11-28T13:00:00Z", "2026-11-28T14:00:00Z"] {
        let r = ws.run_at(at, &["run", "offsite-check"]);
        assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    }
    assert_eq!(
        subset(&ws),
        [
            ("1/2".to_string(), "failed".to_string()),
            ("1/2".into(), "failed".into()),
            ("1/2".into(), "success".into()),
            ("2/2".into(), "success".into()),
        ]
    );
}

#[test]
#[ignore = "needs restic; run scripts/test"]
fn a_killed_copy_leaves_no_restic_and_its_stale_lock_does_not_refuse_forget() {
    let ws = workspace(
        "offsite",
        "forget last=1\n                limit-upload \"1MiB\"",
    );
    let repo = ws.path("offsite").display().to_string();
    // A dump of several MB of incompressible data: a copy limited to 1 MiB/s takes seconds.
    let db = rusqlite::Connection::open(ws.path("app.db")).unwrap();
    db.execute_batch("CREATE TABLE blobs (b BLOB)").unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..40 {
        let blob: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        db.execute("INSERT INTO blobs VALUES (?1)", [blob]).unwrap();
    }
    drop(db);
    assert_eq!(ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]).code(), 0);
    let child = ws
        .command(&["run", "offsite"])
        .env("OPS_NOW", "2026-11-28T10:05:00Z")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let needle = "--tag=dump=full-20261128-1000.sql.gz";
    assert!(
        wait_for(30, || !processes_with(needle).is_empty()),
        "restic backup never started"
    );
    let locks = || {
        std::fs::read_dir(ws.path("offsite/locks"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    // Killed while it holds its lock and uploads.
    assert!(wait_for(30, || locks() > 0), "restic backup took no lock");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let restic = processes_with(needle);
    signal(child.id(), rustix::process::Signal::KILL);
    child.wait_with_output().unwrap();
    // Gone, and reaped by init (a zombie would still count as a live lock holder).
    assert!(
        wait_for(10, || restic
            .iter()
            .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())),
        "restic outlived ops-run"
    );
    assert!(locks() > 0, "the killed restic left no lock to test with");

    // The next copy ships the dump and its forget is not refused by the dead restic's lock.
    let r = ws.run_at("2026-11-28T10:10:00Z", &["run", "offsite"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let prune = ws
        .activities()
        .into_iter()
        .rfind(|a| a["type"] == "prune")
        .unwrap();
    assert_eq!(prune["status"], "success", "{prune}");
    assert_eq!(locks(), 0);
    assert_eq!(snapshots(&ws, &repo).len(), 1);
}
