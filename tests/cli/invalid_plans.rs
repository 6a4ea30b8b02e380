//! The corpus of invalid plans: each `tests/invalid/NAME.kdl` must fail `plan validate` with
//! exactly `NAME.stderr` (file, line, column, snippet, message), exit 2. Set
//! `UPDATE_EXPECT=1` to rewrite the expected files after a deliberate change, then review them.

use crate::harness::{BIN, repo_root};

#[test]
fn every_invalid_plan_gives_its_exact_diagnostic() {
    let dir = repo_root().join("tests/invalid");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "kdl"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 30,
        "the corpus has only {} plans",
        cases.len()
    );
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut failures = Vec::new();
    for case in &cases {
        let file = case.file_name().unwrap().to_str().unwrap();
        let out = std::process::Command::new(BIN)
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .args(["--plans", file, "plan", "validate"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let expected_path = case.with_extension("stderr");
        if update {
            std::fs::write(&expected_path, &stderr).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("{} is missing", expected_path.display()));
        if out.status.code() != Some(2) {
            failures.push(format!("{file}: exit {:?}, expected 2", out.status.code()));
        }
        if !out.stdout.is_empty() {
            failures.push(format!(
                "{file}: unexpected stdout {:?}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        if stderr != expected {
            failures.push(format!(
                "{file}: stderr differs\n--- expected\n{expected}--- actual\n{stderr}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_plan_that_is_not_utf8_names_the_first_bad_byte() {
    let ws = crate::harness::Workspace::new();
    std::fs::create_dir_all(ws.path("plans")).unwrap();
    std::fs::write(
        ws.path("plans/p.kdl"),
        b"plan crm {\n    base \"backups\"\n    // caf\xe9\n}\n",
    )
    .unwrap();
    let r = ws.run(&["--plans", "plans", "plan", "validate"]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(
        r.stderr().contains("p.kdl:3:11: not UTF-8 (byte 0xe9)"),
        "{}",
        r.stderr()
    );
}

#[test]
fn thousands_of_errors_on_one_long_line_print_a_bounded_report() {
    let ws = crate::harness::Workspace::new();
    let line: String = (0..2000).map(|i| format!("bad{i} 1; ")).collect();
    ws.write(
        "plans/p.kdl",
        &format!("plan crm {{ base \"backups\"; {line} }}\n"),
    );
    let r = ws.run(&["--plans", "plans", "plan", "validate"]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr().len() < 64 * 1024, "{} bytes", r.stderr().len());
    assert!(
        r.stderr().contains("… and 1950 more diagnostics not shown"),
        "{}",
        &r.stderr()[r.stderr().len().saturating_sub(500)..]
    );
}

#[test]
fn a_template_that_is_not_a_regular_file_is_refused_at_once() {
    let ws = crate::harness::Workspace::with_plan(
        r#"plan crm {
            base "backups"
            report weekly {
                template "/dev/zero"
            }
        }"#,
    );
    let started = std::time::Instant::now();
    let r = ws.run(&["plan", "validate"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(
        r.stderr().contains("/dev/zero is not a regular file"),
        "{}",
        r.stderr()
    );
}

#[test]
fn any_nesting_of_comments_ends_in_a_diagnostic_never_a_crash() {
    for n in [40usize, 3_000, 100_000] {
        let ws = crate::harness::Workspace::new();
        let comments = "/* ".repeat(n) + &" */".repeat(n);
        ws.write(
            "plans/p.kdl",
            &format!("plan crm {{\n    base \"/srv/backups/crm\"\n    {comments}\n}}\n"),
        );
        let r = ws.run(&["--plans", "plans", "plan", "validate"]);
        assert_eq!(r.code(), 2, "{n}: {}", r.stderr());
        assert!(
            r.stderr().contains("nested deeper than 32 levels") && r.stderr().contains("p.kdl:3:"),
            "{n}: {}",
            &r.stderr()[..r.stderr().len().min(2000)]
        );
    }
    // A few levels are fine.
    let ws = crate::harness::Workspace::new();
    ws.write(
        "plans/p.kdl",
        "plan crm {\n    base \"/srv/backups/crm\"\n    /* a /* b /* c */ */ */\n}\n",
    );
    let r = ws.run(&["--plans", "plans", "plan", "validate"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
}
