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
