//! Reports: the built-in template rendered against the sample context matches a golden file;
//! a template with an unknown variable fails `plan validate` with the template's line; every
//! `{{help}}` key used by a template exists in the registry.

use crate::harness::{Workspace, repo_root};

#[test]
fn the_report_template_renders_the_golden_file() {
    let registry = ops_run::help::registry().unwrap();
    let out = ops_run::report::render::render(
        ops_run::report::render::BACKUP_REPORT,
        &ops_run::report::sample_context(),
        &registry,
    )
    .unwrap();
    let golden = repo_root().join("tests/golden/backup-report.md");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&golden, &out).unwrap();
    }
    assert_eq!(out, std::fs::read_to_string(&golden).unwrap());
}

#[test]
fn a_template_with_an_unknown_variable_fails_validation_with_its_line() {
    let ws = Workspace::with_plan(
        r#"plan crm {
            base "backups"
            report weekly {
                template "my-report.md.hbs"
            }
        }"#,
    );
    ws.write(
        "plans/my-report.md.hbs",
        "# {{plan}}\n\nOverall: {{overal}}\n",
    );
    let r = ws.run(&["plan", "validate"]);
    assert_eq!(r.code(), 2, "{}", r.stdout());
    let err = r.stderr();
    assert!(
        err.contains("error: template `my-report.md.hbs` does not render: line 3"),
        "{err}"
    );
    assert!(err.contains("overal"), "{err}");
    assert!(err.contains("plans/main.kdl:4:26"), "{err}");
    // Fixed, it validates and renders.
    ws.write(
        "plans/my-report.md.hbs",
        "# {{plan}}\n\nOverall: {{overall}}\n",
    );
    assert_eq!(ws.run(&["plan", "validate"]).code(), 0);
    let r = ws.run_at("2026-11-28T05:00:00Z", &["report"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let path = r.stdout().trim().to_string();
    assert!(
        path.ends_with("backups/reports/backup-report-20261128.md"),
        "{path}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "# crm\n\nOverall: OK\n"
    );
    // A second report the same day does not overwrite the first.
    let again = ws.run_at("2026-11-28T06:00:00Z", &["report"]);
    assert!(
        again
            .stdout()
            .trim()
            .ends_with("backup-report-20261128-2.md"),
        "{}",
        again.stdout()
    );
}

#[test]
fn every_help_key_used_in_a_template_exists() {
    let registry = ops_run::help::registry().unwrap();
    let mut used = 0;
    for entry in std::fs::read_dir(repo_root().join("templates"))
        .unwrap()
        .flatten()
    {
        if entry.path().extension().is_none_or(|x| x != "hbs") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for part in text.split("{{help \"").skip(1) {
            let key = part.split('"').next().unwrap();
            assert!(
                registry.contains_key(key),
                "{}: unknown help key {key}",
                entry.path().display()
            );
            used += 1;
        }
        // Keys computed from a variable (`{{help state_help}}`) name the health states.
        if text.contains("{{help state_help}}") {
            for state in ["ok", "stale", "overdue", "incomplete", "fail", "missing"] {
                assert!(
                    registry.contains_key(&format!("state-{state}")),
                    "state-{state} missing"
                );
            }
        }
    }
    assert!(used >= 3);
}

#[test]
fn help_lists_and_explains_keys() {
    let ws = Workspace::new();
    let r = ws.run(&["help"]);
    assert_eq!(r.code(), 0);
    assert!(
        r.stdout().contains("state-stale       Stale\n"),
        "{}",
        r.stdout()
    );
    let r = ws.run(&["help", "retention"]);
    assert!(
        r.stdout().starts_with("Retention\n\nAfter each good dump"),
        "{}",
        r.stdout()
    );
    let r = ws.run(&["help", "retentoin"]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().contains("did you mean `retention`?"),
        "{}",
        r.stderr()
    );
}
