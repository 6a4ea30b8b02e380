//! Repository checks with the real restic: a healthy repository passes (the part of the data
//! read turns on each run), a damaged pack file fails the check and makes it critical, and a
//! copy's destination is checked with the copy's credentials.

use serde_json::Value;

use crate::harness::Workspace;

const PASSWORD: &str = "check-Pw-0b3f2";

fn workspace() -> Workspace {
    let ws = Workspace::with_plan(
        r#"plan app {
            base "backups"
            database main {
                engine sqlite
                path "app.db"
            }
            dump db {
                database main
            }
            snapshot uploads {
                paths "data"
                repository "repo"
                password env=REPO_PW
                init #true
            }
            copy offsite {
                dump db
                repository "offsite"
                password env=REPO_PW
                init #true
            }
            check repo {
                snapshot uploads
                read-data-subset "1/3"
            }
            check offsite-check {
                copy offsite
                read-data-subset "100%"
            }
        }"#,
    )
    .env("REPO_PW", PASSWORD);
    let cache = ws.path("cache").display().to_string();
    let ws = ws.env("RESTIC_CACHE_DIR", &cache);
    rusqlite::Connection::open(ws.path("app.db"))
        .unwrap()
        .execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);")
        .unwrap();
    for i in 0..5 {
        ws.write(&format!("data/f{i}.txt"), &format!("file {i}\n"));
    }
    for (at, step) in [
        ("2026-11-28T10:00:00Z", "db"),
        ("2026-11-28T10:01:00Z", "uploads"),
        ("2026-11-28T10:02:00Z", "offsite"),
    ] {
        let r = ws.run_at(at, &["run", step]);
        assert_eq!(r.code(), 0, "{step}: {}{}", r.stdout(), r.stderr());
    }
    ws
}

fn checks(ws: &Workspace, step: &str) -> Vec<Value> {
    ws.activities()
        .into_iter()
        .filter(|a| a["type"] == "repo_check" && a["step"] == step)
        .collect()
}

fn state(ws: &Workspace, now: &str, id: &str) -> (String, String) {
    let r = ws.run_at(now, &["status", "--json"]);
    let v: Value = serde_json::from_str(&r.stdout()).unwrap();
    let c = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .cloned()
        .unwrap();
    (
        c["state"].as_str().unwrap().to_string(),
        c["severity"].as_str().unwrap().to_string(),
    )
}

#[test]
#[ignore = "needs restic; run scripts/test"]
fn a_healthy_repository_passes_and_the_part_read_turns() {
    let ws = workspace();
    assert_eq!(state(&ws, "2026-11-28T10:03:00Z", "app/repo").0, "overdue");
    for (i, at) in ["2026-11-28T11:00:00Z", "2026-11-29T11:00:00Z"]
        .iter()
        .enumerate()
    {
        let r = ws.run_at(at, &["run", "repo"]);
        assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
        assert!(
            r.stdout().contains(&format!("data read: {}/3", i + 1)),
            "{}",
            r.stdout()
        );
    }
    let subsets: Vec<Value> = checks(&ws, "repo")
        .iter()
        .map(|a| a["meta"]["subset"].clone())
        .collect();
    assert_eq!(subsets.len(), 2);
    assert!(subsets.contains(&"1/3".into()) && subsets.contains(&"2/3".into()));
    assert_eq!(
        state(&ws, "2026-11-29T11:01:00Z", "app/repo"),
        ("ok".into(), "ok".into())
    );
    // Overdue after its eight days.
    assert_eq!(state(&ws, "2026-12-08T12:00:00Z", "app/repo").0, "overdue");

    // A copy's destination, checked with the copy's credentials, all data read.
    let r = ws.run_at("2026-11-29T11:05:00Z", &["run", "offsite-check"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(r.stdout().contains("data read: 100%"), "{}", r.stdout());
    let all = serde_json::to_string(&ws.activities()).unwrap();
    assert!(!all.contains(PASSWORD));
}

#[test]
#[ignore = "needs restic; run scripts/test"]
fn a_damaged_pack_file_fails_the_check_and_makes_it_critical() {
    let ws = workspace();
    // Flip a byte in the middle of every pack file of the copy's destination.
    let mut damaged = 0;
    for dir in std::fs::read_dir(ws.path("offsite/data"))
        .unwrap()
        .flatten()
    {
        for pack in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let mut bytes = std::fs::read(pack.path()).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff;
            let mut perms = std::fs::metadata(pack.path()).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(pack.path(), perms).unwrap();
            std::fs::write(pack.path(), bytes).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0);
    let r = ws.run_at("2026-11-28T11:00:00Z", &["run", "offsite-check"]);
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    assert!(
        r.stdout().contains("the repository check failed"),
        "{}",
        r.stdout()
    );
    assert_eq!(checks(&ws, "offsite-check")[0]["status"], "failed");
    assert_eq!(
        state(&ws, "2026-11-28T11:01:00Z", "app/offsite-check"),
        ("fail".into(), "crit".into())
    );
}
