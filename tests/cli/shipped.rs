//! Shipped text is tested: every plan under plans/ and examples/, and every kdl block of the
//! README, validates.

use std::path::{Path, PathBuf};

use crate::harness::{Workspace, repo_root};

fn kdl_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            kdl_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "kdl") {
            out.push(p);
        }
    }
}

#[test]
fn every_shipped_plan_validates() {
    let mut files = Vec::new();
    kdl_files(&repo_root().join("plans"), &mut files);
    kdl_files(&repo_root().join("examples"), &mut files);
    assert!(
        files.len() >= 5,
        "expected the sample plans and examples, found {files:?}"
    );
    let ws = Workspace::new();
    for f in files {
        let r = ws.run(&["--plans", f.to_str().unwrap(), "plan", "validate"]);
        assert_eq!(
            r.code(),
            0,
            "{} does not validate:\n{}",
            f.display(),
            r.stderr()
        );
        assert!(
            !r.stderr().contains("error"),
            "{}: {}",
            f.display(),
            r.stderr()
        );
    }
}

#[test]
fn every_kdl_block_in_the_readme_validates() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match &mut current {
            None if line.trim_start() == "```kdl" => current = Some(String::new()),
            Some(block) if line.trim_start() == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    assert!(
        blocks.len() >= 3,
        "README has only {} kdl blocks",
        blocks.len()
    );
    let ws = Workspace::new();
    for (i, block) in blocks.iter().enumerate() {
        let name = format!("readme-{i}.kdl");
        ws.write(&name, block);
        let r = ws.run(&["--plans", &name, "plan", "validate"]);
        assert_eq!(
            r.code(),
            0,
            "README kdl block {i} does not validate:\n{block}\n{}",
            r.stderr()
        );
    }
}

#[test]
fn the_product_example_validates_exactly_as_written() {
    // plans/crm.kdl is the example of the product contract, byte for byte.
    let r = Workspace::new().run(&[
        "--plans",
        repo_root().join("plans/crm.kdl").to_str().unwrap(),
        "plan",
        "validate",
    ]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(
        r.stdout(),
        format!(
            "ok: 1 plan, 6 steps in {} (8 warnings)\n",
            repo_root().join("plans/crm.kdl").display()
        )
    );
}

/// The man pages and completions the build writes beside the binary (`assets/`), for the
/// package: every subcommand has its page, man renders them, bash reads its completion.
#[test]
fn the_build_writes_man_pages_and_completions() {
    let assets = std::path::Path::new(crate::harness::BIN)
        .parent()
        .unwrap()
        .join("assets");
    let page = std::fs::read_to_string(assets.join("man/ops-run.1")).unwrap();
    assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
    for sub in ["plan", "restore", "init", "serve", "status", "runbook"] {
        assert!(page.contains(sub), "ops-run.1 does not name {sub}");
        assert!(
            assets.join(format!("man/ops-run-{sub}.1")).exists(),
            "no page for {sub}"
        );
    }
    let rendered = std::process::Command::new("man")
        .args(["-l", "-P", "cat"])
        .arg(assets.join("man/ops-run-restore-db.1"))
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&rendered.stdout);
    assert!(
        rendered.status.success() && text.contains("--from"),
        "{text}"
    );
    for file in ["ops-run.bash", "_ops-run", "ops-run.fish"] {
        let text = std::fs::read_to_string(assets.join("completions").join(file)).unwrap();
        assert!(text.contains("restore") && text.contains("init"), "{file}");
    }
    let bash = std::process::Command::new("bash")
        .arg("-n")
        .arg(assets.join("completions/ops-run.bash"))
        .status()
        .unwrap();
    assert!(bash.success());
}
