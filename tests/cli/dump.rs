//! Dumps as transactions. Failure injection uses fake tools (the `tools` block points at a
//! script); the real engines are dumped and restored with their own clients.

use std::process::{Command, Stdio};

use crate::harness::{Workspace, processes_with, signal, wait_for};

/// A plan dumping database `main` with `pg-dump` set to `./fake-pg-dump`.
fn fake_plan(extra: &str) -> String {
    format!(
        r#"plan app {{
            base "backups"
            tools {{
                pg-dump "./fake-pg-dump"
            }}
            database main {{
                engine postgres
                name app
                password env=APP_DB_PASSWORD
            }}
            dump db {{
                database main
                schedule "0 2 * * *"
                {extra}
            }}
        }}"#
    )
}

const GOOD_DUMP: &str = "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'pg_dump (PostgreSQL) 15.99'; exit 0; }\nfor i in $(seq 1 2000); do echo \"INSERT INTO t VALUES ($i, 'row $i');\"; done\necho '--'\necho '-- PostgreSQL database dump complete'\necho '--'\n";

fn fake(ws: &Workspace, script: &str) {
    ws.write("fake-pg-dump", script);
    let p = ws.path("fake-pg-dump");
    Command::new("chmod").arg("+x").arg(&p).status().unwrap();
}

/// Names in backups/db, sorted, hidden files included.
fn db_files(ws: &Workspace) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(ws.path("backups/db"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The dump's extension for a plan's `extra` settings: `sql.zst` with `compression "zstd"`.
fn ext_of(extra: &str) -> &'static str {
    if extra.contains("zstd") {
        "sql.zst"
    } else {
        "sql.gz"
    }
}

fn good_first(ws: &Workspace, ext: &str) -> Vec<String> {
    fake(ws, GOOD_DUMP);
    let r = ws.run_at("2026-11-27T01:00:00Z", &["plan", "apply"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let files = db_files(ws);
    assert_eq!(
        files,
        [
            format!("full-20261127-0100.{ext}"),
            format!("full-20261127-0100.{ext}.manifest.json"),
            format!("full-20261127-0100.{ext}.sha256")
        ]
    );
    files
}

fn assert_failed_and_untouched(ws: &Workspace, before: &[String], must_mention: &str) {
    let ext = if before[0].ends_with(".sql.zst") {
        "sql.zst"
    } else {
        "sql.gz"
    };
    let r = ws.run_at("2026-11-28T01:00:00Z", &["plan", "apply"]);
    assert_eq!(r.code(), 1, "{}", r.stdout());
    assert_eq!(db_files(ws), before, "a failed dump left a file behind");
    let a = ws.activities().pop().unwrap();
    assert_eq!(a["status"], "failed");
    let log = a["log_excerpt"].as_str().unwrap();
    assert!(
        log.contains(must_mention),
        "log does not mention {must_mention:?}:\n{log}"
    );
    assert!(log.contains("no dump was kept"), "{log}");
    // The previous good dump is still whole.
    let ok = Command::new("sha256sum")
        .arg("-c")
        .arg(format!("full-20261127-0100.{ext}.sha256"))
        .current_dir(ws.path("backups/db"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
}

#[test]
fn a_good_dump_is_gzip_with_a_matching_sidecar_and_meta() {
    let ws = Workspace::with_plan(&fake_plan("")).env("APP_DB_PASSWORD", "pw-Fake-123");
    good_first(&ws, "sql.gz");
    let db = ws.path("backups/db");
    assert!(
        Command::new("gzip")
            .arg("-t")
            .arg(db.join("full-20261127-0100.sql.gz"))
            .status()
            .unwrap()
            .success()
    );
    let text = Command::new("zcat")
        .arg(db.join("full-20261127-0100.sql.gz"))
        .output()
        .unwrap()
        .stdout;
    assert!(String::from_utf8_lossy(&text).contains("INSERT INTO t VALUES (2000, 'row 2000');"));
    let a = &ws.activities()[0];
    assert_eq!(a["type"], "db_backup");
    assert_eq!(a["status"], "success");
    let meta = &a["meta"];
    assert!(
        meta["artifact"]
            .as_str()
            .unwrap()
            .ends_with("backups/db/full-20261127-0100.sql.gz")
    );
    assert_eq!(meta["uncompressed_bytes"], text.len() as u64);
    assert_eq!(
        meta["size"],
        std::fs::metadata(db.join("full-20261127-0100.sql.gz"))
            .unwrap()
            .len()
    );
    assert_eq!(meta["engine"], "postgres");
    assert_eq!(meta["tool_version"], "pg_dump (PostgreSQL) 15.99");
    let sidecar = std::fs::read_to_string(db.join("full-20261127-0100.sql.gz.sha256")).unwrap();
    assert_eq!(
        sidecar,
        format!(
            "{}  full-20261127-0100.sql.gz\n",
            meta["sha256"].as_str().unwrap()
        )
    );
}

#[test]
fn a_tool_that_dies_half_way_leaves_nothing_and_says_why() {
    a_tool_that_dies_half_way_leaves_nothing_and_says_why_with("");
}

#[test]
fn a_tool_that_dies_half_way_leaves_nothing_and_says_why_zstd() {
    a_tool_that_dies_half_way_leaves_nothing_and_says_why_with("compression \"zstd\"");
}

fn a_tool_that_dies_half_way_leaves_nothing_and_says_why_with(extra: &str) {
    let ws = Workspace::with_plan(&fake_plan(extra)).env("APP_DB_PASSWORD", "pw-Fake-123");
    let before = good_first(&ws, ext_of(extra));
    fake(
        &ws,
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'pg_dump 15'; exit 0; }\nfor i in $(seq 1 5000); do echo \"INSERT INTO t VALUES ($i);\"; done\necho 'pg_dump: error: connection lost half way' >&2\nexit 1\n",
    );
    assert_failed_and_untouched(&ws, &before, "pg_dump: error: connection lost half way");
    let a = ws.activities().pop().unwrap();
    assert!(
        a["log_excerpt"]
            .as_str()
            .unwrap()
            .contains("exited with status 1")
    );
}

#[test]
fn a_dump_without_the_completion_marker_is_refused() {
    a_dump_without_the_completion_marker_is_refused_with("");
}

#[test]
fn a_dump_without_the_completion_marker_is_refused_zstd() {
    a_dump_without_the_completion_marker_is_refused_with("compression \"zstd\"");
}

fn a_dump_without_the_completion_marker_is_refused_with(extra: &str) {
    let ws = Workspace::with_plan(&fake_plan(extra)).env("APP_DB_PASSWORD", "pw-Fake-123");
    let before = good_first(&ws, ext_of(extra));
    fake(
        &ws,
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'pg_dump 15'; exit 0; }\necho 'CREATE TABLE t (id int);'\necho 'INSERT INTO t VALUES (1);'\nexit 0\n",
    );
    assert_failed_and_untouched(&ws, &before, "does not end with the completion line");
}

#[test]
fn a_dump_that_goes_on_after_the_completion_line_is_refused() {
    let ws = Workspace::with_plan(&fake_plan("")).env("APP_DB_PASSWORD", "pw-Fake-123");
    let before = good_first(&ws, "sql.gz");
    fake(
        &ws,
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'pg_dump 15'; exit 0; }\necho 'CREATE TABLE t (id int);'\necho '-- PostgreSQL database dump complete'\nprintf \"INSERT INTO t VALUES (1, 'half\"\nexit 0\n",
    );
    assert_failed_and_untouched(&ws, &before, "does not end with the completion line");
}

#[test]
fn a_tool_that_writes_nothing_is_refused() {
    let ws = Workspace::with_plan(&fake_plan("")).env("APP_DB_PASSWORD", "pw-Fake-123");
    let before = good_first(&ws, "sql.gz");
    fake(
        &ws,
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'pg_dump 15'; exit 0; }\nexit 0\n",
    );
    assert_failed_and_untouched(&ws, &before, "it is incomplete");
}

#[test]
fn min_size_and_max_shrink_refuse_a_suspicious_dump() {
    let ws = Workspace::with_plan(&fake_plan("max-shrink \"50%\""))
        .env("APP_DB_PASSWORD", "pw-Fake-123");
    let before = good_first(&ws, "sql.gz");
    fake(
        &ws,
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'pg_dump 15'; exit 0; }\necho 'INSERT INTO t VALUES (1);'\necho '-- PostgreSQL database dump complete'\n",
    );
    assert_failed_and_untouched(
        &ws,
        &before,
        "more than 50% smaller than the previous good dump full-20261127-0100.sql.gz",
    );

    let ws =
        Workspace::with_plan(&fake_plan("min-size \"1MiB\"")).env("APP_DB_PASSWORD", "pw-Fake-123");
    fake(&ws, GOOD_DUMP);
    let r = ws.run(&["plan", "apply"]);
    assert_eq!(r.code(), 1);
    assert!(
        r.stdout().contains("smaller than min-size 1.0 MiB"),
        "{}",
        r.stdout()
    );
    assert!(db_files(&ws).is_empty(), "{:?}", db_files(&ws));
}

#[test]
fn a_full_disk_fails_the_dump_and_keeps_the_previous_one() {
    a_full_disk_fails_the_dump_and_keeps_the_previous_one_with("");
}

#[test]
fn a_full_disk_fails_the_dump_and_keeps_the_previous_one_zstd() {
    a_full_disk_fails_the_dump_and_keeps_the_previous_one_with("compression \"zstd\"");
}

fn a_full_disk_fails_the_dump_and_keeps_the_previous_one_with(extra: &str) {
    let ws = Workspace::with_plan(&fake_plan(extra)).env("APP_DB_PASSWORD", "pw-Fake-123");
    let before = good_first(&ws, ext_of(extra));
    // ~6 MB of incompressible text against a 2 MiB file size limit (SIGXFSZ ignored, so the
    // write fails with EFBIG as on a full disk).
    fake(
        &ws,
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'pg_dump 15'; exit 0; }\nhead -c 4500000 /dev/urandom | base64\necho '-- PostgreSQL database dump complete'\n",
    );
    let bin = crate::harness::BIN;
    let out = Command::new("sh")
        .current_dir(ws.path(""))
        .env("OPS_STATE", ws.path("state/ops.db"))
        .env("OPS_NOW", "2026-11-28T01:00:00Z")
        .env("APP_DB_PASSWORD", "pw-Fake-123")
        .args([
            "-c",
            &format!("trap '' XFSZ; ulimit -f 2048; exec {bin} plan apply"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(db_files(&ws), before);
    let a = ws.activities().pop().unwrap();
    assert_eq!(a["status"], "failed");
    assert!(
        a["log_excerpt"]
            .as_str()
            .unwrap()
            .contains("cannot write the dump: File too large"),
        "{a}"
    );
}

#[test]
fn a_killed_dump_leaves_no_final_file_and_the_next_apply_cleans_up() {
    a_killed_dump_leaves_no_final_file_and_the_next_apply_cleans_up_with("");
}

#[test]
fn a_killed_dump_leaves_no_final_file_and_the_next_apply_cleans_up_zstd() {
    a_killed_dump_leaves_no_final_file_and_the_next_apply_cleans_up_with("compression \"zstd\"");
}

fn a_killed_dump_leaves_no_final_file_and_the_next_apply_cleans_up_with(extra: &str) {
    // ops-run's credentials files go to a private folder beside the state database.
    let ws = Workspace::new();
    ws.write("plans/main.kdl", &fake_plan(extra));
    let ws = ws.env("APP_DB_PASSWORD", "pw-Fake-123");
    // Unique to this test and variant: the gzip and zstd runs go on side by side.
    let sleep = format!(
        "sleep 29.{}{}",
        std::process::id(),
        if extra.is_empty() { 1 } else { 2 }
    );
    fake(
        &ws,
        &format!(
            "#!/bin/sh\n[ \"$1\" = --version ] && {{ echo 'pg_dump 15'; exit 0; }}\nfor i in $(seq 1 3000); do echo \"INSERT INTO t VALUES ($i);\"; done\nexec {sleep}\n"
        ),
    );
    let mut child = ws
        .command(&["plan", "apply"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for(10, || !processes_with(&sleep).is_empty()),
        "the dump never started"
    );
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    // The fake tool's group outlives ops-run; end it so the test leaves nothing behind.
    for pid in processes_with(&sleep) {
        signal(pid, rustix::process::Signal::KILL);
    }
    let files = db_files(&ws);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].starts_with(".full-") && files[0].contains(".tmp."),
        "{files:?}"
    );
    // The killed ops-run could not remove its credentials file either.
    let secrets = || -> Vec<String> {
        std::fs::read_dir(ws.path("state/ops.db.credentials"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("ops-run-pgpass-"))
            .collect()
    };
    assert_eq!(secrets().len(), 1, "{:?}", secrets());
    let mode = std::fs::metadata(ws.path("state/ops.db.credentials"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o700
    );
    // The next apply marks the row abandoned and removes the orphan before dumping anew.
    fake(&ws, GOOD_DUMP);
    let r = ws.run(&["plan", "apply", "--force"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let files = db_files(&ws);
    assert!(files.iter().all(|f| !f.starts_with('.')), "{files:?}");
    let rows = ws.statuses();
    assert_eq!(rows[0].1, "abandoned");
    assert_eq!(rows[1].1, "success");
    // The credentials file of the killed run is gone, and the new run removed its own.
    assert!(secrets().is_empty(), "{:?}", secrets());
    // The apply swept the orphan before anything ran, and said so.
    assert!(
        r.stderr().contains("(left by an ops-run that was stopped)"),
        "{}",
        r.stderr()
    );
}

#[test]
fn retention_runs_after_a_good_dump_as_its_own_prune_activity() {
    let ws = Workspace::with_plan(&fake_plan("keep last=2")).env("APP_DB_PASSWORD", "pw-Fake-123");
    fake(&ws, GOOD_DUMP);
    ws.write("backups/db/unrelated.sql.gz", "not ours");
    for day in ["25", "26", "27", "28"] {
        let r = ws.run_at(&format!("2026-11-{day}T01:00:00Z"), &["plan", "apply"]);
        assert_eq!(r.code(), 0, "{}", r.stdout());
    }
    assert_eq!(
        db_files(&ws),
        [
            "full-20261127-0100.sql.gz",
            "full-20261127-0100.sql.gz.manifest.json",
            "full-20261127-0100.sql.gz.sha256",
            "full-20261128-0100.sql.gz",
            "full-20261128-0100.sql.gz.manifest.json",
            "full-20261128-0100.sql.gz.sha256",
            "unrelated.sql.gz"
        ]
    );
    let prunes: Vec<_> = ws
        .activities()
        .into_iter()
        .filter(|a| a["type"] == "prune")
        .collect();
    assert_eq!(prunes.len(), 4);
    assert_eq!(prunes[3]["step"], "db");
    assert_eq!(prunes[3]["status"], "success");
    assert!(
        prunes[3]["meta"]["deleted"][0]
            .as_str()
            .unwrap()
            .ends_with("full-20261126-0100.sql.gz")
    );
    // The dry run lists what would go next.
    let r = ws.run_at("2026-11-29T01:30:00Z", &["plan", "apply", "--dry-run"]);
    assert!(
        r.stdout()
            .contains("retention (last=2) would delete after a good dump:"),
        "{}",
        r.stdout()
    );
    assert!(
        r.stdout().contains("full-20261127-0100.sql.gz"),
        "{}",
        r.stdout()
    );
}

#[test]
fn the_password_reaches_the_tool_by_file_never_by_argv() {
    let ws = Workspace::with_plan(&fake_plan("")).env("APP_DB_PASSWORD", "pw-Never-On-Argv-77");
    // The fake records its own command line and the password file it was given.
    fake(
        &ws,
        &format!(
            "#!/bin/sh\n[ \"$1\" = --version ] && {{ echo 'pg_dump 15'; exit 0; }}\ntr '\\0' ' ' < /proc/$$/cmdline > {dir}/argv.txt\ncat \"$PGPASSFILE\" > {dir}/pgpass.txt\necho \"$PGPASSFILE\" > {dir}/pgpass-path.txt\nstat -c %a \"$PGPASSFILE\" > {dir}/mode.txt\n{rest}",
            dir = ws.path("").display(),
            rest = GOOD_DUMP.split_once('\n').unwrap().1
        ),
    );
    let r = ws.run(&["plan", "apply"]);
    assert_eq!(r.code(), 0, "{}", r.stdout());
    let argv = std::fs::read_to_string(ws.path("argv.txt")).unwrap();
    assert!(
        argv.contains("--dbname=app") && !argv.contains("pw-Never-On-Argv-77"),
        "{argv}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path("pgpass.txt")).unwrap(),
        "*:*:*:*:pw-Never-On-Argv-77\n"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path("mode.txt")).unwrap().trim(),
        "600"
    );
    // In the private folder beside the state database, not in the shared /tmp.
    let path = std::fs::read_to_string(ws.path("pgpass-path.txt")).unwrap();
    assert!(
        path.starts_with(&format!(
            "{}/",
            ws.path("state/ops.db.credentials").display()
        )),
        "{path}"
    );
    // The file is gone once the dump is done.
    let left: Vec<_> = [std::env::temp_dir(), ws.path("state/ops.db.credentials")]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap())
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("pw-Never-On-Argv-77"))
        })
        .collect();
    assert!(
        left.is_empty(),
        "a credentials file was left behind: {left:?}"
    );
}

#[test]
fn when_the_autumn_hour_repeats_retention_keeps_the_dump_made_last() {
    let plan = fake_plan("keep last=1").replace(
        "base \"backups\"",
        "base \"backups\"\n            timezone \"Europe/Prague\"",
    );
    let ws = Workspace::with_plan(&plan).env("APP_DB_PASSWORD", "pw-Fake-123");
    fake(&ws, GOOD_DUMP);
    // 02:59 summer time, then 02:10 winter time eleven minutes later: the newer name sorts
    // first.
    for at in ["2026-10-25T00:59:00Z", "2026-10-25T01:10:00Z"] {
        let r = ws.run_at(at, &["run", "db"]);
        assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    }
    assert_eq!(
        db_files(&ws),
        [
            "full-20261025-0210.sql.gz",
            "full-20261025-0210.sql.gz.manifest.json",
            "full-20261025-0210.sql.gz.sha256"
        ]
    );
}
