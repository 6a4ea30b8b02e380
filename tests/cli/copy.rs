//! Offsite copies with the real restic: to a repository in a folder, and over restic's REST
//! protocol to `rclone serve restic` (also append-only). What is at the destination is asked
//! of the destination: a snapshot forgotten there is copied again. An unreachable destination
//! fails the step and touches no local dump. No credential shows anywhere.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::{Reaped, Workspace, listening};
use crate::serve::free_port;

pub const PASSWORD: &str = "offsite-Pw-5c1d7";

pub fn workspace(repository: &str, copy_extra: &str) -> Workspace {
    workspace_with(repository, copy_extra, "")
}

fn workspace_with(repository: &str, copy_extra: &str, steps: &str) -> Workspace {
    let ws = Workspace::with_plan(&format!(
        r#"plan app {{
            base "backups"
            database main {{
                engine sqlite
                path "app.db"
            }}
            dump db {{
                database main
            }}
            copy offsite {{
                dump db
                repository "{repository}"
                password env=OFFSITE_PW
                init #true
                stale-after "26h"
                {copy_extra}
            }}
            {steps}
        }}"#
    ))
    .env("OFFSITE_PW", PASSWORD);
    let cache = ws.path("cache").display().to_string();
    let ws = ws.env("RESTIC_CACHE_DIR", &cache);
    rusqlite::Connection::open(ws.path("app.db"))
        .unwrap()
        .execute_batch(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);
             INSERT INTO users (email) VALUES ('a@example.com'), ('b@example.com');",
        )
        .unwrap();
    ws
}

/// `restic snapshots --json` of `repository`, as restic itself lists it.
pub fn snapshots(ws: &Workspace, repository: &str) -> Vec<Value> {
    let out = restic_ok(ws, repository, &["snapshots", "--json"]);
    serde_json::from_slice::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// restic on `repository` (times in UTC), as the test's own hand; its stdout once it
/// succeeded.
fn restic_ok(ws: &Workspace, repository: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new("restic")
        .args(args)
        .env("RESTIC_REPOSITORY", repository)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("RESTIC_CACHE_DIR", ws.path("cache"))
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The dumps the snapshots of `repository` hold, by their `dump` tag, sorted.
fn dumps_at(ws: &Workspace, repository: &str) -> Vec<String> {
    let mut dumps: Vec<String> = snapshots(ws, repository)
        .iter()
        .filter_map(|s| tag(s, "dump"))
        .collect();
    dumps.sort();
    dumps
}

pub fn tag(snapshot: &Value, key: &str) -> Option<String> {
    snapshot["tags"].as_array()?.iter().find_map(|t| {
        t.as_str()?
            .strip_prefix(key)?
            .strip_prefix('=')
            .map(str::to_string)
    })
}

fn copies(ws: &Workspace) -> Vec<Value> {
    ws.activities()
        .into_iter()
        .filter(|a| a["type"] == "offsite_copy")
        .collect()
}

pub fn check(ws: &Workspace, now: &str, id: &str) -> Value {
    let r = ws.run_at(now, &["status", "--json"]);
    let v: Value = serde_json::from_str(&r.stdout()).unwrap();
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no check {id}: {v}"))
}

/// Every word a user or a scraper can see.
pub fn everything(ws: &Workspace, now: &str) -> String {
    let mut all = serde_json::to_string(&ws.activities()).unwrap();
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["metrics"],
        &["plan", "show"],
        &["activities", "--json"],
    ] {
        let r = ws.run_at(now, args);
        all.push_str(&r.stdout());
        all.push_str(&r.stderr());
    }
    all
}

#[test]
#[ignore = "needs restic; run scripts/test"]
fn each_good_dump_is_copied_once_and_again_when_it_is_gone_at_the_destination() {
    let ws = workspace("offsite", "");
    let repo = ws.path("offsite").display().to_string();
    // restic runs in the plans folder: the relative repository is this folder.
    assert_eq!(ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]).code(), 0);
    assert_eq!(ws.run_at("2026-11-28T11:00:00Z", &["run", "db"]).code(), 0);
    // A dump without its sidecar is no good dump: never copied.
    ws.write("backups/db/full-20261128-0900.sql.gz", "half a dump");

    let r = ws.run_at("2026-11-28T11:05:00Z", &["run", "offsite"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(r.stdout().contains("copied 2 dumps"), "{}", r.stdout());
    let snaps = snapshots(&ws, &repo);
    let mut dumps: Vec<String> = snaps.iter().filter_map(|s| tag(s, "dump")).collect();
    dumps.sort();
    assert_eq!(
        dumps,
        ["full-20261128-1000.sql.gz", "full-20261128-1100.sql.gz"]
    );
    for s in &snaps {
        assert_eq!(tag(s, "plan").as_deref(), Some("app"));
        assert_eq!(tag(s, "step").as_deref(), Some("offsite"));
        assert!(s["tags"].as_array().unwrap().contains(&"ops-run".into()));
        // The dump travels with its sidecar, and the sha256 it was copied with is a tag.
        let dump = tag(s, "dump").unwrap();
        let paths: Vec<&str> = s["paths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert!(paths.iter().any(|p| p.ends_with(&dump)), "{paths:?}");
        assert!(
            paths.iter().any(|p| p.ends_with(&format!("{dump}.sha256"))),
            "{paths:?}"
        );
        // …and its manifest, so a restore from the copy checks the rows too.
        assert!(
            paths
                .iter()
                .any(|p| p.ends_with(&format!("{dump}.manifest.json"))),
            "{paths:?}"
        );
        let sidecar =
            std::fs::read_to_string(ws.path(&format!("backups/db/{dump}.sha256"))).unwrap();
        assert_eq!(tag(s, "sha256").as_deref(), Some(&sidecar[..64]));
    }
    assert_eq!(
        check(&ws, "2026-11-28T11:06:00Z", "app/offsite")["state"],
        "ok"
    );

    // A second run asks the destination and finds nothing to do.
    let r = ws.run_at("2026-11-28T11:10:00Z", &["run", "offsite"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(r.stdout().contains("nothing to copy"), "{}", r.stdout());
    assert_eq!(snapshots(&ws, &repo).len(), 2);

    // Forgotten at the destination: copied again on the next run.
    let gone = snaps
        .iter()
        .find(|s| tag(s, "dump").as_deref() == Some("full-20261128-1000.sql.gz"))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = Command::new("restic")
        .args(["forget", &gone])
        .env("RESTIC_REPOSITORY", &repo)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("RESTIC_CACHE_DIR", ws.path("cache"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let r = ws.run_at("2026-11-28T11:15:00Z", &["run", "offsite"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(r.stdout().contains("copied 1 dump"), "{}", r.stdout());
    let again: Vec<String> = snapshots(&ws, &repo)
        .iter()
        .filter_map(|s| tag(s, "dump"))
        .collect();
    assert!(again.contains(&"full-20261128-1000.sql.gz".to_string()));
    assert_eq!(again.len(), 2);

    // The check goes stale when the newest dump at the destination is older than stale-after.
    let c = check(&ws, "2026-11-29T14:00:00Z", "app/offsite");
    assert_eq!(c["state"], "stale", "{c}");
    let metrics = ws.run_at("2026-11-28T11:16:00Z", &["metrics"]).stdout();
    assert!(
        metrics.contains(
            "ops_run_copy_last_success_timestamp_seconds{plan=\"app\",step=\"offsite\",destination=\"offsite\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("ops_run_copy_newest_dump_timestamp_seconds{plan=\"app\",step=\"offsite\""),
        "{metrics}"
    );
    assert!(!everything(&ws, "2026-11-28T11:16:00Z").contains(PASSWORD));
    // The page shows the copy on the dump's card, destination named.
    let served = crate::serve::serve(&ws, None);
    let (code, _, page) = crate::serve::request(served.port, "GET / HTTP/1.0\r\n\r\n");
    assert_eq!(code, 200);
    let card = page
        .split("<h3>app/db</h3>")
        .nth(1)
        .unwrap()
        .split("</article>")
        .next()
        .unwrap();
    assert!(
        card.contains("Offsite app/offsite: ok") && card.contains("at offsite"),
        "{card}"
    );
    assert!(!page.contains(PASSWORD));
}

#[test]
#[ignore = "needs restic; run scripts/test"]
fn an_unreachable_destination_fails_and_touches_no_local_dump() {
    let port = free_port();
    let ws = workspace(&format!("rest:http://127.0.0.1:{port}/"), "");
    assert_eq!(ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]).code(), 0);
    let before = std::fs::read(ws.path("backups/db/full-20261128-1000.sql.gz")).unwrap();
    let r = ws.run_at("2026-11-28T10:05:00Z", &["run", "offsite"]);
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    assert!(r.stdout().contains("failed"), "{}", r.stdout());
    assert_eq!(
        std::fs::read(ws.path("backups/db/full-20261128-1000.sql.gz")).unwrap(),
        before
    );
    assert!(
        ws.path("backups/db/full-20261128-1000.sql.gz.sha256")
            .exists()
    );
    let c = check(&ws, "2026-11-28T10:06:00Z", "app/offsite");
    assert_eq!(
        (c["state"].as_str(), c["severity"].as_str()),
        (Some("fail"), Some("crit")),
        "{c}"
    );
    assert_eq!(copies(&ws)[0]["status"], "failed");
}

/// `rclone serve restic` on a free loopback port, stopped when dropped.
pub struct Rclone {
    _child: Reaped,
    pub port: u16,
}

pub fn rclone(dir: &std::path::Path, extra: &[&str]) -> Rclone {
    let port = free_port();
    std::fs::create_dir_all(dir).unwrap();
    let child = Command::new("rclone")
        .args(["serve", "restic", "--addr", &format!("127.0.0.1:{port}")])
        .args(extra)
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rclone (apt-get install rclone)");
    let r = Rclone {
        _child: Reaped(child),
        port,
    };
    assert!(listening(port, 10), "rclone serve restic did not start");
    r
}

#[test]
#[ignore = "needs restic and rclone; run scripts/test"]
fn a_rest_destination_with_credentials_append_only_keeps_its_copies_and_says_so() {
    let user_pw = "rest-Secret-77aa";
    let dir = tempfile::tempdir().unwrap();
    let server = rclone(
        dir.path(),
        &["--append-only", "--user", "backup", "--pass", user_pw],
    );
    let repository = format!("rest:http://backup:{user_pw}@127.0.0.1:{}/", server.port);
    let ws = workspace(&repository, "forget last=1");
    assert_eq!(ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]).code(), 0);
    assert_eq!(ws.run_at("2026-11-28T11:00:00Z", &["run", "db"]).code(), 0);
    let r = ws.run_at("2026-11-28T11:05:00Z", &["run", "offsite"]);
    // The copy succeeded; the forget the append-only server refused is a warning only.
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(r.stdout().contains("copied 2 dumps"), "{}", r.stdout());
    assert!(
        r.stdout().contains("the destination refused restic forget"),
        "{}",
        r.stdout()
    );
    assert_eq!(snapshots(&ws, &repository).len(), 2);
    let prune = ws
        .activities()
        .into_iter()
        .find(|a| a["type"] == "prune")
        .unwrap();
    assert_eq!(prune["status"], "incomplete");
    assert_eq!(
        check(&ws, "2026-11-28T11:06:00Z", "app/offsite")["state"],
        "ok"
    );
    let all = everything(&ws, "2026-11-28T11:06:00Z");
    assert!(!all.contains(user_pw), "the REST password leaked");
    assert!(!all.contains(PASSWORD));
    assert!(
        all.contains("backup:***@127.0.0.1"),
        "the destination is named without its password"
    );
}

#[test]
#[ignore = "needs restic; run scripts/test"]
fn a_verify_from_the_copy_restores_it_and_refuses_a_different_file_under_its_tag() {
    let ws = workspace_with(
        "offsite",
        "",
        r#"verify fromcopy {
            dump db
            from offsite
            min-tables 1
            expect "SELECT count(*) FROM users" min=2
        }
        drill rehearsal {
            dump db
            from offsite
            expect "SELECT count(*) FROM users" min=2
        }"#,
    );
    let repo = ws.path("offsite").display().to_string();
    assert_eq!(ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]).code(), 0);
    assert_eq!(
        ws.run_at("2026-11-28T10:05:00Z", &["run", "offsite"])
            .code(),
        0
    );
    // This machine is gone: only the copy is left.
    std::fs::remove_dir_all(ws.path("backups/db")).unwrap();
    let r = ws.run_at("2026-11-28T10:10:00Z", &["run", "fromcopy"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(r.stdout().contains("restored 1 tables"), "{}", r.stdout());
    let verify = ws
        .activities()
        .into_iter()
        .find(|a| a["type"] == "verify_restore")
        .unwrap();
    let log = std::fs::read_to_string(verify["meta"]["verify_log"].as_str().unwrap()).unwrap();
    assert!(log.contains("from: copy `offsite`"), "{log}");
    assert!(log.contains("matches the sidecar"), "{log}");
    // A drill from the copy takes the same path, and says so in its own log.
    let r = ws.run_at("2026-11-28T10:10:30Z", &["run", "rehearsal"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let drill = ws
        .activities()
        .into_iter()
        .find(|a| a["type"] == "dr_drill")
        .unwrap();
    assert_eq!(drill["status"], "success", "{drill}");
    let excerpt = drill["log_excerpt"].as_str().unwrap();
    assert!(
        excerpt.contains("from: copy `offsite`") && excerpt.contains("matches the sidecar"),
        "{excerpt}"
    );
    // `restore db --from` the copy, with this machine's dumps gone.
    let r = ws.run_at(
        "2026-11-28T10:11:00Z",
        &[
            "restore",
            "db",
            "db",
            "--from",
            "offsite",
            "--to",
            "restored.db",
        ],
    );
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(
        r.stdout().contains("from: copy `offsite`"),
        "{}",
        r.stdout()
    );
    let users: i64 = rusqlite::Connection::open(ws.path("restored.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(users, 2);

    // Someone stores another file under the same dump tag: refused on the checksum, nothing
    // imported, nothing left behind.
    let sha = tag(&snapshots(&ws, &repo)[0], "sha256").unwrap();
    ws.write(
        "evil/full-20261128-1000.sql.gz",
        "not the dump that was copied",
    );
    let out = Command::new("restic")
        .args([
            "backup",
            "--tag=ops-run",
            "--tag=plan=app",
            "--tag=step=offsite",
            "--tag=dump=full-20261128-1000.sql.gz",
            &format!("--tag=sha256={sha}"),
        ])
        .arg(ws.path("evil/full-20261128-1000.sql.gz"))
        .env("RESTIC_REPOSITORY", &repo)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("RESTIC_CACHE_DIR", ws.path("cache"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = ws.run_at("2026-11-28T10:15:00Z", &["run", "fromcopy"]);
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    assert!(r.stdout().contains("checksum mismatch"), "{}", r.stdout());
    assert!(
        r.stdout().contains("nothing was imported"),
        "{}",
        r.stdout()
    );
    let left: Vec<_> = std::fs::read_dir(ws.path("backups/verify"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "scratch left behind: {left:?}");
}

/// A real OpenSSH server on a free loopback port, in its own folder with its own host key and
/// one authorized key, stopped when dropped.
struct Sshd {
    _child: Reaped,
    port: u16,
    dir: tempfile::TempDir,
}

fn sshd() -> Sshd {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    for key in ["hostkey", "clientkey"] {
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.path().join(key))
            .status()
            .expect("ssh-keygen (apt-get install openssh-client)")
            .success();
        assert!(ok);
    }
    std::fs::copy(
        dir.path().join("clientkey.pub"),
        dir.path().join("authorized_keys"),
    )
    .unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("sshd_config"),
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/hostkey\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
        ),
    )
    .unwrap();
    // sshd run as root wants its privilege separation folder.
    let _ = std::fs::create_dir_all("/run/sshd");
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(dir.path().join("sshd_config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sshd (apt-get install openssh-server)");
    let s = Sshd {
        _child: Reaped(child),
        port,
        dir,
    };
    assert!(listening(port, 10), "sshd did not start");
    s
}

#[test]
#[ignore = "needs restic and openssh-server; run scripts/test"]
fn a_copy_goes_over_sftp_to_a_real_ssh_server() {
    let server = sshd();
    let user = String::from_utf8(Command::new("whoami").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    let remote = server.dir.path().join("restic").display().to_string();
    let repository = format!("sftp:{user}@127.0.0.1:{remote}");
    // restic's own way to reach a server on another port with its own key: sftp.command.
    let ssh = format!(
        "ssh -p {} -i {}/clientkey -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes {user}@127.0.0.1 -s sftp",
        server.port,
        server.dir.path().display()
    );
    let ws = workspace_with(
        &repository,
        "",
        r#"tools {
            restic "./restic-sftp"
        }"#,
    );
    ws.write(
        "restic-sftp",
        &format!("#!/bin/sh\nexec restic -o sftp.command='{ssh}' \"$@\"\n"),
    );
    Command::new("chmod")
        .args(["+x"])
        .arg(ws.path("restic-sftp"))
        .status()
        .unwrap();
    assert_eq!(ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]).code(), 0);
    assert_eq!(ws.run_at("2026-11-28T11:00:00Z", &["run", "db"]).code(), 0);
    let r = ws.run_at("2026-11-28T11:05:00Z", &["run", "offsite"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(r.stdout().contains("copied 2 dumps"), "{}", r.stdout());
    let r = ws.run_at("2026-11-28T11:10:00Z", &["run", "offsite"]);
    assert!(
        r.stdout().contains("nothing to copy: 2 dumps"),
        "{}",
        r.stdout()
    );
    // On the server's disk: a restic repository holding both dumps.
    let out = Command::new("restic")
        .args([
            "snapshots",
            "--json",
            "--tag",
            "ops-run,plan=app,step=offsite",
        ])
        .env("RESTIC_REPOSITORY", &remote)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("RESTIC_CACHE_DIR", ws.path("cache"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snaps: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snaps.len(), 2);
    assert_eq!(
        check(&ws, "2026-11-28T11:11:00Z", "app/offsite")["state"],
        "ok"
    );
    assert!(!everything(&ws, "2026-11-28T11:11:00Z").contains(PASSWORD));
}

#[test]
#[ignore = "needs restic and rclone; run scripts/test"]
fn a_snapshot_into_two_repositories_writes_a_marker_for_each() {
    let dir = tempfile::tempdir().unwrap();
    let server = rclone(dir.path(), &[]);
    let second = format!("rest:http://127.0.0.1:{}/", server.port);
    let ws = Workspace::with_plan(&format!(
        r#"plan app {{
            base "backups"
            snapshot uploads {{
                paths "data"
                repository "repo"
                repository "{second}"
                password env=OFFSITE_PW
                init #true
            }}
        }}"#
    ))
    .env("OFFSITE_PW", PASSWORD);
    let cache = ws.path("cache").display().to_string();
    let ws = ws.env("RESTIC_CACHE_DIR", &cache);
    ws.write("data/a.txt", "alpha\n");
    let r = ws.run_at("2026-11-28T10:00:00Z", &["run", "uploads"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert_eq!(
        snapshots(&ws, &ws.path("repo").display().to_string()).len(),
        1
    );
    assert_eq!(snapshots(&ws, &second).len(), 1);
    let markers: Vec<String> = std::fs::read_dir(ws.path("backups/snapshots"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(markers.len(), 2, "{markers:?}");
    assert_eq!(
        markers
            .iter()
            .filter(|m| m.contains("repository: 2"))
            .count(),
        1
    );
    assert_eq!(
        check(&ws, "2026-11-28T10:01:00Z", "app/uploads")["state"],
        "ok"
    );

    // The second repository gone: the step fails and says which; the first one has its snapshot.
    drop(server);
    let r = ws.run_at("2026-11-28T11:00:00Z", &["run", "uploads"]);
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    assert!(r.stdout().contains("repository 2"), "{}", r.stdout());
    assert_eq!(
        snapshots(&ws, &ws.path("repo").display().to_string()).len(),
        2
    );
    assert_eq!(
        check(&ws, "2026-11-28T11:01:00Z", "app/uploads")["state"],
        "fail"
    );
}

#[test]
#[ignore = "needs restic; run scripts/test"]
fn forget_at_the_destination_keeps_what_it_says_and_the_upload_limit_reaches_restic() {
    let ws = workspace_with(
        "offsite",
        r#"forget last=1
        limit-upload "2MiB""#,
        r#"tools {
            restic "./restic-logged"
        }"#,
    );
    // The real restic, with each argv written down first.
    ws.write(
        "restic-logged",
        "#!/bin/sh\necho \"$@\" >> restic-argv.txt\nexec restic \"$@\"\n",
    );
    Command::new("chmod")
        .arg("+x")
        .arg(ws.path("restic-logged"))
        .status()
        .unwrap();
    let show = ws.run(&["plan", "show"]).stdout();
    assert!(
        show.contains("limit-upload") && show.contains("2.0 MiB/s"),
        "{show}"
    );
    assert_eq!(ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]).code(), 0);
    assert_eq!(ws.run_at("2026-11-28T11:00:00Z", &["run", "db"]).code(), 0);
    let r = ws.run_at("2026-11-28T11:05:00Z", &["run", "offsite"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(
        r.stdout()
            .contains("restic forget --prune at the destination"),
        "{}",
        r.stdout()
    );
    let before = snapshots(&ws, &ws.path("offsite").display().to_string());
    let left: Vec<String> = before.iter().filter_map(|s| tag(s, "dump")).collect();
    assert_eq!(left, ["full-20261128-1100.sql.gz"]);
    let argv = std::fs::read_to_string(ws.path("restic-argv.txt")).unwrap();
    let backups: Vec<&str> = argv.lines().filter(|l| l.starts_with("backup")).collect();
    assert_eq!(backups.len(), 2, "{argv}");
    assert!(
        backups.iter().all(|l| l.contains("--limit-upload=2048")),
        "{argv}"
    );
    // ops-run decides what goes (by its own records) and names the snapshots by id.
    assert!(
        argv.lines().any(|l| l.starts_with("forget --prune ")),
        "{argv}"
    );
    // The local dumps are untouched by forget at the destination.
    assert!(ws.path("backups/db/full-20261128-1000.sql.gz").exists());
}

/// A restore from a copy that was killed leaves its fetch folder; the next run sweeps it.
#[test]
fn a_killed_restore_from_a_copy_leaves_nothing_for_long() {
    let ws = workspace("offsite", "");
    ws.write(
        "backups/verify/.copy-fetch.999999999/db/full.sql.gz",
        "partial",
    );
    let r = ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(!ws.path("backups/verify/.copy-fetch.999999999").exists());
    assert!(r.stderr().contains("a restore of app/db"), "{}", r.stderr());
}

/// A snapshot written into the destination by hand — dated in the future to look newest, or
/// holding a dump this step never copied — is never counted by retention and never deleted,
/// and the copy's health says so; the real newest copy stays.
#[test]
#[ignore = "needs restic; run scripts/test"]
fn forged_snapshots_at_the_destination_do_not_steer_retention() {
    let ws = workspace("offsite", "forget last=1");
    let repo = ws.path("offsite").display().to_string();
    assert_eq!(ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]).code(), 0);
    let r = ws.run_at("2026-11-28T10:05:00Z", &["run", "offsite"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let forge = |dump: &str, time: &str| {
        std::fs::write(ws.path("forged.txt"), dump).unwrap();
        let forged = ws.path("forged.txt");
        restic_ok(
            &ws,
            &repo,
            &[
                "backup",
                "--quiet",
                "--tag=ops-run",
                "--tag=plan=app",
                "--tag=step=offsite",
                &format!("--tag=dump={dump}"),
                "--tag=sha256=0000",
                &format!("--time={time}"),
                forged.to_str().unwrap(),
            ],
        );
    };
    // Claims to be newer than anything: restic's own keep-last=1 would keep it alone.
    forge("full-20261128-1000.sql.gz", "2026-12-31 00:00:00");
    // A dump name this step never shipped, dated as its name says.
    forge("full-20261128-0900.sql.gz", "2026-11-28 09:00:00");
    assert_eq!(ws.run_at("2026-11-28T11:00:00Z", &["run", "db"]).code(), 0);
    let r = ws.run_at("2026-11-28T11:05:00Z", &["run", "offsite"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(
        r.stdout()
            .contains("claims 2026-12-31 00:00 UTC but holds the dump of 2026-11-28 10:00 UTC"),
        "{}",
        r.stdout()
    );
    assert!(
        r.stdout()
            .contains("full-20261128-0900.sql.gz, which this step never recorded copying"),
        "{}",
        r.stdout()
    );
    let left = dumps_at(&ws, &repo);
    // The real 10:00 copy went by the rule; the real newest stays; the forged ones stay too
    // (evidence), uncounted.
    assert_eq!(
        left,
        [
            "full-20261128-0900.sql.gz",
            "full-20261128-1000.sql.gz",
            "full-20261128-1100.sql.gz"
        ]
    );
    let status = ws.run_at("2026-11-28T11:10:00Z", &["status"]);
    assert_eq!(status.code(), 1, "{}", status.stdout());
    assert!(
        status.stdout().contains("retention does not trust"),
        "{}",
        status.stdout()
    );

    // From a trusted host with no log of the copies (a state of its own, empty): the tags and
    // times alone decide; the future-dated one is still refused, and reported (exit 1).
    let r = ws
        .command(&["copy", "forget", "offsite"])
        .env("OPS_STATE", ws.path("trusted/state.db"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert_eq!(
        r.status.code(),
        Some(1),
        "{out}{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(
        out.contains("checked by their tags and times only"),
        "{out}"
    );
    assert!(out.contains("claims 2026-12-31 00:00 UTC"), "{out}");
    let left = dumps_at(&ws, &repo);
    assert_eq!(
        left,
        ["full-20261128-1000.sql.gz", "full-20261128-1100.sql.gz"]
    );
}
