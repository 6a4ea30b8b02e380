//! Shipped text is tested: every plan under plans/ and examples/, and every kdl block of the
//! README and of the book (docs/src), validates; the book's table of contents names every
//! chapter, and every link between the README and the chapters lands on a file and a heading.

use std::path::{Path, PathBuf};

use crate::harness::{Workspace, repo_root};

/// The files under `dir` whose names end in `.ext`, at any depth.
fn files_ending(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            files_ending(&p, ext, out);
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
}

#[test]
fn every_shipped_plan_validates() {
    let mut files = Vec::new();
    files_ending(&repo_root().join("plans"), "kdl", &mut files);
    files_ending(&repo_root().join("examples"), "kdl", &mut files);
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

/// The README and every Markdown file of the book, relative to the repository.
fn documents() -> Vec<PathBuf> {
    let mut out = vec![repo_root().join("README.md")];
    files_ending(&repo_root().join("docs/src"), "md", &mut out);
    out.sort();
    out
}

/// The fenced blocks of `lang` in a Markdown text, each with the line it starts on.
fn fenced(text: &str, lang: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    let mut other = false;
    for (n, line) in text.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut current, fence) {
            (None, Some(l)) if !other && l == lang => current = Some((n + 1, String::new())),
            (None, Some(_)) => other = !other,
            (Some(_), Some("")) => blocks.push(current.take().unwrap()),
            (Some((_, block)), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

#[test]
fn every_kdl_block_of_the_readme_and_the_book_validates() {
    let ws = Workspace::new();
    let mut count = 0;
    let mut wrong = Vec::new();
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        let rel = doc.strip_prefix(repo_root()).unwrap().display().to_string();
        for (line, block) in fenced(&text, "kdl") {
            count += 1;
            let name = format!("block-{count}.kdl");
            ws.write(&name, &block);
            let r = ws.run(&["--plans", &name, "plan", "validate"]);
            if r.code() != 0 {
                wrong.push(format!(
                    "{rel}:{line}: the kdl block does not validate:\n{block}\n{}",
                    r.stderr()
                ));
            }
        }
    }
    assert!(
        count >= 14,
        "only {count} kdl blocks in the README and the book"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// mdBook's id of a heading: lower case, letters, digits, `-` and `_` kept, spaces become
/// `-`, the rest dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => {
                Some(c.to_lowercase().next().unwrap())
            }
            _ => None,
        })
        .collect()
}

/// The ids of a Markdown file's headings (outside code blocks); a repeated heading gets `-1`,
/// `-2`… as mdBook numbers them.
fn anchors(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            code = !code;
            continue;
        }
        let level = line.len() - line.trim_start_matches('#').len();
        if code || level == 0 || !line[level..].starts_with(' ') {
            continue;
        }
        let base = anchor(&line[level..]);
        let mut id = base.clone();
        let mut n = 0;
        while !out.insert(id.clone()) {
            n += 1;
            id = format!("{base}-{n}");
        }
    }
    out
}

/// The relative link targets of a Markdown text (`[text](target)`), outside code, each with
/// its line; web addresses and mail are left out.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut code = false;
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            code = !code;
            continue;
        }
        if code {
            continue;
        }
        // Inline code is not a link.
        let plain: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        for part in plain.split("](").skip(1) {
            let Some(target) = part.split(')').next() else {
                continue;
            };
            if !target.contains("://") && !target.starts_with("mailto:") {
                out.push((n + 1, target.to_string()));
            }
        }
    }
    out
}

#[test]
fn every_link_of_the_readme_and_the_book_lands_on_a_file_and_a_heading() {
    let mut wrong = Vec::new();
    let mut count = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        let rel = doc.strip_prefix(repo_root()).unwrap().display().to_string();
        for (line, target) in links(&text) {
            count += 1;
            let (file, fragment) = match target.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (target.as_str(), None),
            };
            let dest = if file.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(file)
            };
            let Ok(dest_text) = std::fs::read(&dest) else {
                wrong.push(format!(
                    "{rel}:{line}: `{target}`: no file {}",
                    dest.display()
                ));
                continue;
            };
            if let Some(fragment) = fragment {
                let ids = anchors(&String::from_utf8_lossy(&dest_text));
                if !ids.contains(fragment) {
                    wrong.push(format!(
                        "{rel}:{line}: `{target}`: no heading `#{fragment}` there"
                    ));
                }
            }
        }
    }
    assert!(count >= 30, "only {count} links in the README and the book");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_book_lists_every_chapter_and_only_chapters_that_exist() {
    let src = repo_root().join("docs/src");
    let summary = std::fs::read_to_string(src.join("SUMMARY.md")).unwrap();
    let listed: std::collections::BTreeSet<String> =
        links(&summary).into_iter().map(|(_, t)| t).collect();
    let mut wrong = Vec::new();
    for doc in documents().iter().filter(|d| d.starts_with(&src)) {
        let rel = doc.strip_prefix(&src).unwrap().display().to_string();
        if rel != "SUMMARY.md" && !listed.contains(&rel) {
            wrong.push(format!("docs/src/{rel} is in no entry of SUMMARY.md"));
        }
    }
    for t in &listed {
        if !src.join(t).is_file() {
            wrong.push(format!("SUMMARY.md lists {t}, which does not exist"));
        }
    }
    assert!(listed.len() >= 20, "SUMMARY.md lists only {listed:?}");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// README stays the landing page: the reference lives in the book.
#[test]
fn the_readme_is_a_landing_page() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    assert!(
        readme.len() <= 20 * 1024,
        "README.md is {} bytes",
        readme.len()
    );
    assert!(readme.contains("scripts/demo") && readme.contains("scripts/test"));
}

/// The plan language's man page is made from the book's chapter: every kind has its section.
#[test]
fn the_plan_language_man_page_covers_every_kind() {
    let page = std::fs::read_to_string(
        std::path::Path::new(crate::harness::BIN)
            .parent()
            .unwrap()
            .join("assets/man/ops-run.kdl.5"),
    )
    .unwrap();
    for kind in [
        "COMMAND NAME",
        "DUMP NAME",
        "SNAPSHOT NAME",
        "VERIFY NAME",
        "COPY NAME",
        "CHECK NAME",
        "REPORT NAME",
        "DRILL NAME",
        "RUNBOOK NAME",
        "GIT\\-TAG NAME",
        "BASE\\-BACKUP NAME",
        "WAL NAME",
        "VALUES",
    ] {
        assert!(
            page.contains(&format!(".SH {kind}")),
            "no section {kind} in ops-run.kdl(5)"
        );
    }
    assert!(!page.contains("]("), "a link was left in the page");
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

/// Every setting the plan language accepts is written as code (a span or an example) in its
/// chapter: the table of contents leads to any setting in one click.
#[test]
fn every_setting_is_in_its_chapter() {
    use ops_run::plan::decode;
    use ops_run::steps;
    let chapters: Vec<(&str, Vec<&str>)> = vec![
        ("plan/plan.md", decode::PLAN_KEYS.to_vec()),
        ("plan/database.md", decode::DATABASE_KEYS.to_vec()),
        ("plan/common-settings.md", decode::STEP_COMMON.to_vec()),
        ("alerts.md", decode::ALERT_KEYS.to_vec()),
        (
            "plan/alert-ping-serve.md",
            [&decode::PING_KEYS[..], &decode::SERVE_KEYS[..]].concat(),
        ),
        ("kinds/runbook.md", decode::RUNBOOK_KEYS.to_vec()),
        ("kinds/command.md", steps::command::SETTINGS.keys.to_vec()),
        ("kinds/dump.md", steps::dump::SETTINGS.keys.to_vec()),
        ("kinds/snapshot.md", steps::snapshot::SETTINGS.keys.to_vec()),
        ("kinds/verify.md", steps::verify::SETTINGS.keys.to_vec()),
        ("kinds/copy.md", steps::copy::SETTINGS.keys.to_vec()),
        ("kinds/check.md", steps::check::SETTINGS.keys.to_vec()),
        ("kinds/report.md", steps::report::SETTINGS.keys.to_vec()),
        ("kinds/drill.md", steps::drill::SETTINGS.keys.to_vec()),
        ("kinds/runbook.md", steps::runbook::SETTINGS.keys.to_vec()),
        ("kinds/git-tag.md", steps::git_tag::SETTINGS.keys.to_vec()),
        (
            "kinds/base-backup.md",
            steps::base_backup::SETTINGS.keys.to_vec(),
        ),
        ("kinds/wal.md", steps::wal::SETTINGS.keys.to_vec()),
    ];
    let mut wrong = Vec::new();
    for (chapter, keys) in chapters {
        let text = std::fs::read_to_string(repo_root().join("docs/src").join(chapter)).unwrap();
        // The words of the chapter's code: inline spans and fenced blocks.
        let mut words = std::collections::BTreeSet::new();
        let mut fence = false;
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                fence = !fence;
                continue;
            }
            let code: Vec<&str> = if fence {
                vec![line]
            } else {
                line.split('`').skip(1).step_by(2).collect()
            };
            for span in code {
                words.extend(
                    span.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                        .map(str::to_string),
                );
            }
        }
        for key in keys {
            let written = words.contains(key);
            if !written {
                wrong.push(format!(
                    "docs/src/{chapter} does not name the setting `{key}`"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
