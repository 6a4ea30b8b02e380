//! Point-in-time recovery on a real PostgreSQL cluster the test makes with `initdb`: the
//! server archives through `ops-run wal push` (the `archive_command` line `plan show`
//! prints), `base-backup` stores a checked base, `restore cluster --at T --start` brings back
//! exactly what was committed before T, `--at latest` everything, and a second recovery follows
//! the timeline the first one started. A missing segment is critical by name; an archive that
//! stops taking segments goes stale, and loses nothing once it works again.
//!
//! Run as root (as CI does), the servers run as `postgres` and the archive folders belong to
//! its group — the split the README describes for the package, where the server's user joins
//! the service's group.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::{Workspace, wait_for};
use crate::serve::free_port;

fn bindir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries in /usr/lib/postgresql (apt-get install postgresql)")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect("initdb")
}

fn root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A command as the server's user (`postgres` when we are root).
fn as_server(program: &Path) -> Command {
    if root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn ok(c: &mut Command) -> String {
    let out = c.output().expect("spawn");
    assert!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Gives `path` to the server's group (root only): the package's split, played by the test.
fn to_server_group(path: &Path) {
    if root() {
        ok(Command::new("chgrp").arg("postgres").arg(path));
    }
}

/// The data directories a test started servers in: each stopped when the test ends, however
/// it ends.
struct Servers {
    bin: PathBuf,
    dirs: std::cell::RefCell<Vec<PathBuf>>,
}

impl Servers {
    fn stop(&self, data: &Path) {
        let _ = as_server(&self.bin.join("pg_ctl"))
            .args(["-D"])
            .arg(data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
    fn started(&self, data: &Path) {
        self.dirs.borrow_mut().push(data.to_path_buf());
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for d in self.dirs.borrow().iter() {
            self.stop(d);
        }
    }
}

/// A workspace with a plan archiving a fresh cluster's WAL, the cluster running.
struct Pitr {
    // Stopped before the workspace (and the data directories in it) is removed.
    servers: Servers,
    ws: Workspace,
    port: u16,
    sock: PathBuf,
}

impl Pitr {
    fn new(wal_thresholds: &str, more_steps: &str) -> Pitr {
        Pitr::new_with("", "", wal_thresholds, more_steps)
    }

    /// With `base_extra` in the base-backup step and `check_extra` in its verify and drill.
    fn new_with(
        base_extra: &str,
        check_extra: &str,
        wal_thresholds: &str,
        more_steps: &str,
    ) -> Pitr {
        let ws = Workspace::new().env("OFFSITE_PASSWORD", "offsite-Secret-9");
        std::fs::set_permissions(ws.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = bindir();
        let sock = ws.path("s");
        std::fs::create_dir(&sock).unwrap();
        let data = ws.path("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        if root() {
            ok(Command::new("chown").arg("postgres").arg(&sock).arg(&data));
        }
        ok(as_server(&bin.join("initdb")).arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth-local=trust",
            "--no-sync",
        ]));
        let port = free_port();
        ws.write(
            "plans/main.kdl",
            &format!(
                r#"plan "main" {{
    base "backups"
    timezone "UTC"
    database "main" {{
        engine "postgres"
        host "{sock}"
        port {port}
        user "postgres"
        name "postgres"
    }}
    base-backup "base" {{
        database "main"
        keep last=2
        {base_extra}
    }}
    wal "wal" {{
        database "main"
        {wal_thresholds}
    }}
    verify "base-check" {{
        base-backup "base"
        {check_extra}
        min-tables 1
        expect "SELECT count(*) FROM t" min=1150
    }}
    drill "rehearsal" {{
        base-backup "base"
        {check_extra}
        pitr #true
        expect "SELECT count(*) FROM t" min=1000
        rto "10m"
    }}
{more_steps}
}}
"#,
                sock = sock.display(),
                more_steps = more_steps.replace("WS", &ws.dir.path().display().to_string()),
            ),
        );
        // The first run makes the archive folder (2770, the group may pass through the base).
        let r = ws.run(&["run", "main/wal"]);
        assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
        let wal = ws.path("backups/wal/wal");
        let mode = std::fs::metadata(&wal).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o2770, "the archive folder's mode");
        for p in [ws.path("backups"), ws.path("backups/wal"), wal] {
            to_server_group(&p);
        }
        // The lines `plan show` prints are the ones the server gets.
        let show = ws.run(&["plan", "show", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&show.stdout()).unwrap();
        let lines: Vec<String> = v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "main/wal")
            .unwrap()["postgresql_conf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect();
        assert!(
            lines.iter().any(|l| l.contains("wal push main/wal %p %f")),
            "{lines:?}"
        );
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        use std::io::Write;
        writeln!(
            conf,
            "{}\nlisten_addresses = ''\nunix_socket_directories = '{}'\nport = {port}\nfsync = off",
            lines.join("\n"),
            sock.display()
        )
        .unwrap();
        let servers = Servers {
            bin: bin.clone(),
            dirs: Default::default(),
        };
        servers.started(&data);
        ok(as_server(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(ws.path("s/server.log"))
            .args(["-w", "start"]));
        Pitr {
            ws,
            servers,
            port,
            sock,
        }
    }

    /// SQL on the primary (or a restored server on `port` with its socket in `sock`).
    fn sql_at(&self, sock: &Path, port: u16, sql: &str) -> String {
        ok(Command::new("psql")
            .args([
                "-X",
                "-q",
                "-tA",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
                "-h",
            ])
            .arg(sock)
            .args(["-p", &port.to_string(), "-d", "postgres", "-c", sql]))
    }

    fn sql(&self, sql: &str) -> String {
        self.sql_at(&self.sock, self.port, sql)
    }

    /// Switches to a new segment and waits until the archive holds the one just closed.
    fn switch_and_wait(&self) -> String {
        let closed = self.sql("SELECT pg_walfile_name(pg_switch_wal())");
        let archived = self.ws.path(&format!("backups/wal/wal/{closed}.zst"));
        let sealed = self.ws.path(&format!("backups/wal/wal/{closed}.zst.age"));
        assert!(
            wait_for(30, || archived.exists() || sealed.exists()),
            "{closed} was not archived: {}",
            std::fs::read_to_string(self.ws.path("s/server.log")).unwrap_or_default()
        );
        closed
    }

    /// `restore cluster … --start` into `name` on a new port; the server is stopped with the
    /// test. Returns the port.
    fn restore(&self, step: &str, at: &str, name: &str, extra: &[&str]) -> (u16, PathBuf) {
        let port = free_port();
        let to = self.ws.path(name);
        self.servers.started(&to);
        let p = port.to_string();
        let mut args = vec![
            "restore",
            "cluster",
            step,
            "--at",
            at,
            "--to",
            to.to_str().unwrap(),
            "--port",
            &p,
            "--start",
        ];
        args.extend(extra);
        let r = self.ws.run(&args);
        assert_eq!(
            r.code(),
            0,
            "{}{}\n{}",
            r.stdout(),
            r.stderr(),
            std::fs::read_to_string(to.join("log/ops-run-recovery.log")).unwrap_or_default()
        );
        (port, to)
    }
}

#[test]
#[ignore = "needs PostgreSQL server binaries; run scripts/test"]
fn pitr_brings_back_what_was_committed_before_the_instant_and_follows_a_new_timeline() {
    let p = Pitr::new(
        "",
        r#"    copy "offsite" {
        base-backup "base"
        repository "WS/offsite"
        password env=OFFSITE_PASSWORD
        init #true
    }"#,
    );
    p.sql("CREATE TABLE t (i int PRIMARY KEY, at timestamptz DEFAULT now())");
    p.sql("INSERT INTO t (i) SELECT generate_series(1, 1000)");
    let r = p.ws.run(&["run", "main/base"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let bases: Vec<String> = std::fs::read_dir(p.ws.path("backups/base/base"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        bases
            .iter()
            .any(|n| n.starts_with("base-") && n.ends_with(".tar.zst")),
        "{bases:?}"
    );
    assert!(
        bases.iter().any(|n| n.ends_with(".tar.zst.sha256")),
        "{bases:?}"
    );
    assert!(
        bases.iter().any(|n| n.ends_with(".tar.zst.manifest.json")),
        "{bases:?}"
    );
    // What the server archived: 0640, in the folder's group (setgid), so the service reads it.
    use std::os::unix::fs::MetadataExt;
    let wal = p.ws.path("backups/wal/wal");
    let group = std::fs::metadata(&wal).unwrap().gid();
    let archived: Vec<_> = std::fs::read_dir(&wal).unwrap().flatten().collect();
    assert!(!archived.is_empty());
    for f in archived {
        let m = f.metadata().unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o640, "{:?}", f.path());
        assert_eq!(
            m.gid(),
            group,
            "{:?} is not in the folder's group",
            f.path()
        );
    }

    // doctor sees the role may replicate, the server archives into this step, the modes.
    let doctor = p.ws.run(&["doctor", "main"]).stdout();
    for said in [
        "ok      base-backup main/base: role postgres may replicate",
        "ok      wal main/wal: the server archives into",
    ] {
        assert!(doctor.contains(said), "{said}\n{doctor}");
    }
    assert!(doctor.contains("has the group's modes"), "{doctor}");

    // T1: rows committed; T2: the instant; T3: rows after it.
    p.sql("INSERT INTO t (i) SELECT generate_series(1001, 1100)");
    std::thread::sleep(Duration::from_millis(1200));
    let t2_at = chrono::Utc::now();
    let t2 = t2_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    std::thread::sleep(Duration::from_millis(1200));
    p.sql("INSERT INTO t (i) SELECT generate_series(2001, 2050)");
    p.switch_and_wait();

    // The restore test of the base recovers all archived WAL: the T3 rows are there.
    let r = p.ws.run(&["run", "main/base-check"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let verify =
        p.ws.activities()
            .into_iter()
            .find(|a| a["type"] == "verify_restore")
            .unwrap();
    let verify_log =
        std::fs::read_to_string(verify["meta"]["verify_log"].as_str().unwrap()).unwrap();
    assert!(
        verify_log.contains("expect: SELECT count(*) FROM t → 1150 (min 1150): ok"),
        "{verify_log}"
    );
    assert!(verify_log.contains("scratch: removed"), "{verify_log}");
    let left: Vec<_> = std::fs::read_dir(p.ws.path("backups/verify/base-check"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".cluster"))
        .collect();
    assert!(left.is_empty(), "scratch cluster left: {left:?}");

    // A PITR drill recovers to a random instant of the window and measures both objectives.
    let r = p.ws.run(&["run", "main/rehearsal"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let drill =
        p.ws.activities()
            .into_iter()
            .rev()
            .find(|a| a["type"] == "dr_drill")
            .unwrap();
    assert!(
        drill["meta"]["rto_seconds"].as_f64().unwrap() > 0.0,
        "{drill}"
    );
    assert!(drill["meta"]["rpo_seconds"].is_u64(), "{drill}");
    let log = std::fs::read_to_string(drill["meta"]["log"].as_str().unwrap()).unwrap();
    assert!(log.contains("to 20"), "the drill names its instant: {log}");
    assert!(log.contains("recovery point:"), "{log}");
    assert!(log.contains("expect: SELECT count(*) FROM t → "), "{log}");

    // Offsite: the base and the WAL archive go to a restic repository; with this machine's
    // backups gone, the recovery to T2 reads both back from there.
    let r = p.ws.run(&["run", "main/offsite"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(
        r.stdout().contains("copied 1 base backup"),
        "{}",
        r.stdout()
    );
    let aside = p.ws.path("aside");
    std::fs::create_dir(&aside).unwrap();
    for area in ["base", "wal"] {
        std::fs::rename(p.ws.path(&format!("backups/{area}")), aside.join(area)).unwrap();
    }
    let (port, to) = p.restore("main/base", &t2, "r-offsite", &["--from", "offsite"]);
    assert_eq!(
        p.sql_at(&to, port, "SELECT count(*), max(i) FROM t"),
        "1100|1100"
    );
    assert!(
        !to.join("ops-run-wal").exists(),
        "the fetched WAL is removed"
    );
    p.servers.stop(&to);
    for area in ["base", "wal"] {
        std::fs::rename(aside.join(area), p.ws.path(&format!("backups/{area}"))).unwrap();
    }

    let (port, to) = p.restore("main/base", &t2, "r1", &[]);
    assert_eq!(
        p.sql_at(&to, port, "SELECT count(*), max(i) FROM t"),
        "1100|1100"
    );
    assert_eq!(p.sql_at(&to, port, "SELECT pg_is_in_recovery()"), "f");
    p.servers.stop(&to);

    let (port, to) = p.restore("main/base", "latest", "r2", &[]);
    assert_eq!(
        p.sql_at(&to, port, "SELECT count(*), max(i) FROM t"),
        "1150|2050"
    );
    p.servers.stop(&to);
    // The runbook's procedure, run as printed (with the instant, folder and port filled in),
    // brings back the same rows without ops-run.
    let r = p.ws.run(&["runbook", "--out", "runbook.md"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let md = std::fs::read_to_string(p.ws.path("runbook.md")).unwrap();
    assert!(
        md.contains("### PostgreSQL clusters (point in time)"),
        "{md}"
    );
    let section = md
        .split("#### main/base")
        .nth(1)
        .expect("the cluster's recovery");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .unwrap();
    let by_hand = p.ws.path("rb");
    p.servers.started(&by_hand);
    let hand_port = free_port();
    let script = block
        .replace(
            "TARGET_TIME=''",
            &format!("TARGET_TIME='{}'", t2_at.format("%Y-%m-%d %H:%M:%S%.3f+00")),
        )
        .replace(
            "DATADIR=/var/lib/postgresql/restored",
            &format!("DATADIR={}", by_hand.display()),
        )
        .replace("PORT=5433", &format!("PORT={hand_port}"));
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script}\n{said}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(by_hand.join("recovery.log")).unwrap_or_default()
    );
    assert!(said.contains("recovery stopping before commit"), "{said}");
    assert_eq!(
        p.sql_at(&by_hand, hand_port, "SELECT count(*), max(i) FROM t"),
        "1100|1100"
    );
    p.servers.stop(&by_hand);

    // Neither rehearsal archived anything: the archive holds timeline 1 only.
    assert!(!p.ws.path("backups/wal/wal/00000002.history.zst").exists());

    // The primary is lost; the recovery to T2 becomes the primary and archives (timeline 2).
    p.servers.stop(&p.ws.path("data"));
    let (port3, to3) = p.restore("main/wal", &t2, "r3", &["--archive"]);
    p.sql_at(
        &to3,
        port3,
        "INSERT INTO t (i) SELECT generate_series(5001, 5010)",
    );
    let closed = p.sql_at(&to3, port3, "SELECT pg_walfile_name(pg_switch_wal())");
    assert!(closed.starts_with("00000002"), "{closed}");
    let archived = p.ws.path(&format!("backups/wal/wal/{closed}.zst"));
    assert!(wait_for(30, || archived.exists()), "{closed} not archived");
    assert!(p.ws.path("backups/wal/wal/00000002.history.zst").exists());
    p.servers.stop(&to3);

    // A second recovery follows the new timeline to its end.
    let (port, to) = p.restore("main/base", "latest", "r4", &[]);
    assert_eq!(
        p.sql_at(&to, port, "SELECT count(*), max(i) FROM t"),
        "1110|5010"
    );
    let log = std::fs::read_to_string(to.join("log/ops-run-recovery.log")).unwrap();
    assert!(log.contains("00000002.history"), "{log}");
    p.servers.stop(&to);

    // Every restore is recorded; the archive has no gap.
    let restores =
        p.ws.activities()
            .iter()
            .filter(|a| a["type"] == "restore" && a["status"] == "success")
            .count();
    assert_eq!(restores, 5);
    let r = p.ws.run(&["run", "main/wal"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(r.stdout().contains("no gap"), "{}", r.stdout());

    // A target before the oldest base is refused, nothing created.
    let r = p.ws.run(&[
        "restore",
        "cluster",
        "main/base",
        "--at",
        "2020-01-01T00:00:00Z",
        "--to",
        p.ws.path("r5").to_str().unwrap(),
    ]);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    assert!(
        r.stderr().contains("no base backup finished before"),
        "{}",
        r.stderr()
    );
    assert!(!p.ws.path("r5").exists());
}

#[test]
#[ignore = "needs PostgreSQL server binaries; run scripts/test"]
fn a_missing_segment_is_critical_by_name_and_a_stopped_archive_goes_stale_then_loses_nothing() {
    let p = Pitr::new("stale-after \"1m\"\n        fail-after \"10m\"", "");
    p.sql("CREATE TABLE t (i int)");
    let r = p.ws.run(&["run", "main/base"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let mut closed = Vec::new();
    for n in 0..3 {
        p.sql(&format!(
            "INSERT INTO t SELECT generate_series(1, {})",
            1000 * (n + 1)
        ));
        closed.push(p.switch_and_wait());
    }
    for step in ["main/base-check", "main/rehearsal"] {
        let r = p.ws.run(&["run", step]);
        assert_eq!(r.code(), 0, "{step}: {}{}", r.stdout(), r.stderr());
    }
    let status = p.ws.run(&["status"]);
    assert_eq!(status.code(), 0, "{}", status.stdout());

    // One segment gone from the middle: critical, by name, in status and in the step.
    let middle = p.ws.path(&format!("backups/wal/wal/{}.zst", closed[1]));
    let aside = p.ws.path("aside.zst");
    std::fs::rename(&middle, &aside).unwrap();
    let status = p.ws.run(&["status"]);
    assert_eq!(status.code(), 2, "{}", status.stdout());
    assert!(
        status
            .stdout()
            .contains(&format!("WAL missing from the archive: {}", closed[1])),
        "{}",
        status.stdout()
    );
    let r = p.ws.run(&["run", "main/wal"]);
    assert_eq!(r.code(), 1, "{}", r.stdout());
    assert!(r.stdout().contains(&closed[1]), "{}", r.stdout());
    std::fs::rename(&aside, &middle).unwrap();
    let r = p.ws.run(&["run", "main/wal"]);
    assert_eq!(r.code(), 0, "{}", r.stdout());

    // The archive stops taking segments: the server keeps them and retries.
    let wal = p.ws.path("backups/wal/wal");
    std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o2550)).unwrap();
    p.sql("INSERT INTO t SELECT generate_series(1, 5000)");
    let stuck = p.sql("SELECT pg_walfile_name(pg_switch_wal())");
    assert!(
        wait_for(30, || p.sql("SELECT failed_count FROM pg_stat_archiver")
            != "0"),
        "the push did not fail"
    );
    // Within stale-after of the last segment it is stale (here: 90 s on).
    let later = (chrono::Utc::now() + chrono::Duration::seconds(90))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let status = p.ws.run_at(&later, &["status"]);
    assert_eq!(status.code(), 1, "{}", status.stdout());
    assert!(
        status
            .stdout()
            .lines()
            .any(|l| l.starts_with("main/wal") && l.contains("stale")),
        "{}",
        status.stdout()
    );
    // The step asks the server, which says its archive_command fails.
    let r = p.ws.run(&["run", "main/wal"]);
    assert_eq!(r.code(), 1, "{}", r.stdout());
    assert!(
        r.stdout().contains("archive_command is failing"),
        "{}",
        r.stdout()
    );

    // Archiving works again: the kept segment arrives, and nothing is missing.
    std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o2770)).unwrap();
    let arrived = p.ws.path(&format!("backups/wal/wal/{stuck}.zst"));
    assert!(wait_for(90, || arrived.exists()), "{stuck} never arrived");
    let r = p.ws.run(&["run", "main/wal"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(r.stdout().contains("no gap"), "{}", r.stdout());
    let status = p.ws.run(&["status"]);
    assert_eq!(status.code(), 0, "{}", status.stdout());
    let metrics = p.ws.run(&["metrics"]).stdout();
    assert!(
        metrics.contains("ops_run_wal_last_archived_timestamp_seconds{plan=\"main\",step=\"wal\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ops_run_recovery_point_age_seconds{plan=\"main\",step=\"wal\"}"),
        "{metrics}"
    );

    // Retention (`keep last=2`): a third base lets the first go, and with it the WAL only the
    // first needed; nothing the kept bases need goes, and the archive has no gap.
    let bases = || -> Vec<PathBuf> {
        let mut b: Vec<PathBuf> = std::fs::read_dir(p.ws.path("backups/base/base"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".tar.zst"))
            .collect();
        // Oldest first, by when each was written (two of one minute are `…-2`).
        b.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
        b
    };
    let first_segment = p.ws.path(&format!("backups/wal/wal/{}.zst", closed[0]));
    assert!(first_segment.exists());
    for _ in 0..2 {
        p.sql("INSERT INTO t SELECT generate_series(1, 100)");
        p.switch_and_wait();
        let r = p.ws.run(&["run", "main/base"]);
        assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    }
    let kept = bases();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(
        !first_segment.exists(),
        "WAL only the pruned base needed is gone"
    );
    let r = p.ws.run(&["run", "main/wal"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(r.stdout().contains("no gap"), "{}", r.stdout());

    // A damaged base: the restore test and restore cluster refuse it before anything runs.
    let base = bases().pop().unwrap();
    let mut bytes = std::fs::read(&base).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&base, bytes).unwrap();
    let r = p.ws.run(&["run", "main/base-check"]);
    assert_eq!(r.code(), 1, "{}", r.stdout());
    assert!(r.stdout().contains("checksum mismatch"), "{}", r.stdout());
    let to = p.ws.path("never");
    let r = p.ws.run(&[
        "restore",
        "cluster",
        "main/base",
        "--at",
        "latest",
        "--to",
        to.to_str().unwrap(),
    ]);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    assert!(r.stderr().contains("is damaged"), "{}", r.stderr());
    assert!(!to.exists());
}

/// `wal push` as PostgreSQL calls it, without a server: the same bytes twice succeed,
/// different bytes under the same name fail and leave the archived file as it was, a name
/// that is not a WAL file is refused, and `wal fetch` gives the bytes back.
#[test]
fn wal_push_never_overwrites_and_fetch_gives_the_bytes_back() {
    let ws = Workspace::with_plan(
        r#"plan "main" {
    base "backups"
    database "main" {
        engine "postgres"
        name "app"
    }
    base-backup "base" { database "main"; }
    wal "wal" { database "main"; }
}
"#,
    );
    let seg = ws.path("seg");
    std::fs::write(&seg, vec![3u8; 1 << 20]).unwrap();
    let name = "000000010000000000000007";
    let seg_s = seg.to_str().unwrap();
    // Before the folder exists (no apply yet), a push fails: PostgreSQL keeps the segment.
    let r = ws.run(&["wal", "push", "main/wal", seg_s, name]);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    assert!(r.stderr().contains("no archive folder"), "{}", r.stderr());
    assert_eq!(ws.run(&["run", "main/wal"]).code(), 0);
    for _ in 0..2 {
        let r = ws.run(&["wal", "push", "main/wal", seg_s, name]);
        assert_eq!(r.code(), 0, "{}", r.stderr());
    }
    let archived = ws.path(&format!("backups/wal/wal/{name}.zst"));
    let before = std::fs::read(&archived).unwrap();
    let mode = std::fs::metadata(&archived).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    std::fs::write(&seg, vec![4u8; 1 << 20]).unwrap();
    let r = ws.run(&["wal", "push", "main/wal", seg_s, name]);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    assert!(r.stderr().contains("never overwritten"), "{}", r.stderr());
    assert_eq!(std::fs::read(&archived).unwrap(), before);
    let r = ws.run(&["wal", "push", "main/wal", seg_s, "../../etc/passwd"]);
    assert_eq!(r.code(), 2, "{}", r.stderr());

    let back = ws.path("back");
    let r = ws.run(&["wal", "fetch", "main/wal", name, back.to_str().unwrap()]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(std::fs::read(&back).unwrap(), vec![3u8; 1 << 20]);
    let r = ws.run(&[
        "wal",
        "fetch",
        "main/wal",
        "00000002.history",
        back.to_str().unwrap(),
    ]);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    // No temporary file is left behind.
    let left: Vec<_> = std::fs::read_dir(ws.path("backups/wal/wal"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

/// Every file under `dir`, folders included, recursively.
fn everything(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push(e.path());
        if e.path().is_dir() {
            out.extend(everything(&e.path()));
        }
    }
    out
}

#[test]
#[ignore = "needs PostgreSQL and age; run scripts/test"]
fn an_encrypted_base_and_its_wal_never_reach_the_disk_in_plain_and_recover_with_the_identity() {
    let keys = tempfile::tempdir().unwrap();
    std::fs::set_permissions(keys.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let (key, recipient) = crate::encrypt::keygen(keys.path(), "restore.key");
    let p = Pitr::new_with(
        &format!("encrypt {{ recipient \"{recipient}\"; }}"),
        &format!("identity file=\"{}\"", key.display()),
        "",
        r#"    copy "offsite" {
        base-backup "base"
        repository "WS/offsite"
        password env=OFFSITE_PASSWORD
        init #true
    }"#,
    );
    p.sql("CREATE TABLE t (i int PRIMARY KEY, note text)");
    p.sql("INSERT INTO t SELECT g, 'canary-pitr-' || g FROM generate_series(1, 1000) g");

    // While the base is taken, nothing but the encrypted temporary file appears: no plain
    // folder of the data directory (a plain base is staged as one for pg_verifybackup).
    let base_dir = p.ws.path("backups/base/base");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (stop, dir) = (std::sync::Arc::clone(&stop), base_dir.clone());
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for f in everything(&dir) {
                    if f.is_dir() {
                        seen.insert(f);
                    }
                }
            }
            seen
        })
    };
    let r = p.ws.run(&["run", "main/base"]);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let folders = watcher.join().unwrap();
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(
        folders.is_empty(),
        "a plain folder during the base backup: {folders:?}"
    );
    let names: Vec<String> = std::fs::read_dir(&base_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let base = names
        .iter()
        .find(|n| n.ends_with(".tar.zst.age"))
        .unwrap_or_else(|| panic!("no encrypted base: {names:?}"))
        .clone();
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(base_dir.join(format!("{base}.manifest.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["recipients"][0], recipient.as_str());
    // The base is an ordinary age file of a tar.
    let out = ok(Command::new("bash").args([
        "-c",
        &format!(
            "age -d -i {} {} | zstd -dc | tar -t | grep -c -E '^(PG_VERSION|backup_manifest)$'",
            key.display(),
            base_dir.join(&base).display()
        ),
    ]));
    assert_eq!(out.trim(), "2");

    p.sql("INSERT INTO t SELECT g, 'canary-pitr-' || g FROM generate_series(1001, 1150) g");
    p.switch_and_wait();
    // Everything archived and backed up is age (or a hash, a manifest): nothing readable.
    for f in everything(&p.ws.path("backups/base"))
        .into_iter()
        .chain(everything(&p.ws.path("backups/wal")))
        .filter(|f| f.is_file())
    {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".sha256") || name.ends_with(".manifest.json") {
            continue;
        }
        let head = std::fs::read(&f).unwrap();
        assert!(
            head.starts_with(b"age-encryption.org/v1"),
            "{} is not an age file",
            f.display()
        );
    }

    // The restore test decrypts the base and the WAL with its identity.
    let r = p.ws.run(&["run", "main/base-check"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let doctor = p.ws.run(&["doctor", "main"]).stdout();
    assert!(
        doctor.contains("base-check decrypts base-backup base"),
        "{doctor}"
    );
    // Health sees the encrypted base and the encrypted archive.
    let r = p.ws.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap();
    for step in ["main/base", "main/wal", "main/base-check"] {
        let check = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == step)
            .unwrap_or_else(|| panic!("no check of {step}: {v}"));
        assert_eq!(check["state"], "ok", "{check}");
    }
    // restore cluster: the identity given; the plain WAL goes once recovery ended.
    let (port, to) = p.restore(
        "main/base",
        "latest",
        "restored",
        &["--identity", key.to_str().unwrap()],
    );
    assert_eq!(p.sql_at(&to, port, "SELECT count(*) FROM t").trim(), "1150");
    assert!(!to.join("ops-run-wal-plain").exists());
    p.servers.stop(&to);

    // Offsite: the encrypted base and archive, with this machine's backups gone, restore from
    // the copy with the identity.
    let r = p.ws.run(&["run", "main/offsite"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let aside = p.ws.path("aside");
    std::fs::create_dir(&aside).unwrap();
    for area in ["base", "wal"] {
        std::fs::rename(p.ws.path(&format!("backups/{area}")), aside.join(area)).unwrap();
    }
    let (port, to) = p.restore(
        "main/base",
        "latest",
        "r-offsite",
        &["--from", "offsite", "--identity", key.to_str().unwrap()],
    );
    assert_eq!(p.sql_at(&to, port, "SELECT count(*) FROM t").trim(), "1150");
    assert!(!to.join("ops-run-wal").exists() && !to.join("ops-run-wal-plain").exists());
    p.servers.stop(&to);
    for area in ["base", "wal"] {
        std::fs::rename(aside.join(area), p.ws.path(&format!("backups/{area}"))).unwrap();
    }

    // The runbook's by-hand procedure (age -d, zstd, tar, the archive written back in plain),
    // run as printed with the identity in AGE_IDENTITY.
    let r = p.ws.run(&["runbook", "--out", "runbook.md"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let md = std::fs::read_to_string(p.ws.path("runbook.md")).unwrap();
    assert!(md.contains("--identity \"$AGE_IDENTITY\""), "{md}");
    let block = md
        .split("#### main/base")
        .nth(1)
        .and_then(|s| s.split("```sh\n").nth(1))
        .and_then(|b| b.split("\n```").next())
        .expect("the cluster's recovery")
        .to_string();
    let by_hand = p.ws.path("rb");
    p.servers.started(&by_hand);
    let hand_port = free_port();
    let script = block
        .replace(
            "DATADIR=/var/lib/postgresql/restored",
            &format!("DATADIR={}", by_hand.display()),
        )
        .replace("PORT=5433", &format!("PORT={hand_port}"));
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env("AGE_IDENTITY", &key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}\n{}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(by_hand.join("recovery.log")).unwrap_or_default()
    );
    assert_eq!(
        p.sql_at(&by_hand, hand_port, "SELECT count(*) FROM t")
            .trim(),
        "1150"
    );
    p.servers.stop(&by_hand);
    // Without an identity (a plan with no verify of the base), refused before anything.
    let text = std::fs::read_to_string(p.ws.path("plans/main.kdl")).unwrap();
    let bare = text.replace(&format!("identity file=\"{}\"", key.display()), "");
    p.ws.write("plans/main.kdl", &bare);
    let r = p.ws.run(&["plan", "validate"]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(r.stderr().contains("which is encrypted"), "{}", r.stderr());
}

#[test]
#[ignore = "needs PostgreSQL and age; run scripts/test"]
fn a_plain_base_recovers_through_wal_archived_after_encryption_was_turned_on() {
    let keys = tempfile::tempdir().unwrap();
    let (key, recipient) = crate::encrypt::keygen(keys.path(), "restore.key");
    let p = Pitr::new("", "");
    p.sql("CREATE TABLE t (i int PRIMARY KEY)");
    p.sql("INSERT INTO t SELECT generate_series(1, 1000)");
    let r = p.ws.run(&["run", "main/base"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    p.sql("INSERT INTO t SELECT generate_series(1001, 1100)");
    p.switch_and_wait();
    // Encryption turned on: what the server archives from now on is age.
    let text = std::fs::read_to_string(p.ws.path("plans/main.kdl")).unwrap();
    let text = text.replace(
        "keep last=2",
        &format!("keep last=2\n        encrypt {{ recipient \"{recipient}\"; }}"),
    );
    let text = text.replacen(
        "base-backup \"base\"\n        \n",
        &format!(
            "base-backup \"base\"\n        identity file=\"{}\"\n",
            key.display()
        ),
        2,
    );
    p.ws.write("plans/main.kdl", &text);
    let r = p.ws.run(&["plan", "validate"]);
    assert_eq!(r.code(), 0, "{}{}\n{text}", r.stdout(), r.stderr());
    p.sql("INSERT INTO t SELECT generate_series(1101, 1150)");
    let closed = p.switch_and_wait();
    assert!(
        p.ws.path(&format!("backups/wal/wal/{closed}.zst.age"))
            .exists()
    );
    // The plain base and both kinds of segment: everything comes back, with the identity.
    let (port, to) = p.restore(
        "main/base",
        "latest",
        "mixed",
        &["--identity", key.to_str().unwrap()],
    );
    assert_eq!(p.sql_at(&to, port, "SELECT count(*) FROM t").trim(), "1150");
    p.servers.stop(&to);
    // The restore test too (the plan's identity).
    let r = p.ws.run(&["run", "main/base-check"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
}
