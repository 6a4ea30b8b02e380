//! Release tags with real git: a bare sidecar clone, the evidence in the annotated tag, the
//! push to a `file://` remote; the same name twice fails and leaves the tag alone; a deploy
//! key reaches ssh through GIT_SSH_COMMAND (checked with an ssh stand-in).

use std::process::Command;

use crate::harness::Workspace;

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A remote with one commit on `main`, and a plan tagging it.
fn setup(remote_url: Option<&str>, extra: &str) -> Workspace {
    let ws = Workspace::new();
    let root = ws.path("");
    git(&root, &["init", "-q", "--bare", "-b", "main", "remote.git"]);
    git(&root, &["init", "-q", "-b", "main", "work"]);
    ws.write("work/app.txt", "v1\n");
    git(&ws.path("work"), &["add", "."]);
    git(&ws.path("work"), &["commit", "-q", "-m", "first"]);
    git(
        &ws.path("work"),
        &[
            "push",
            "-q",
            &format!("file://{}/remote.git", root.display()),
            "main",
        ],
    );
    let remote = remote_url.map_or_else(
        || format!("file://{}/remote.git", root.display()),
        str::to_string,
    );
    ws.write(
        "plans/main.kdl",
        &format!(
            r#"plan crm {{
                base "backups"
                timezone "Europe/Prague"
                git-tag release {{
                    repository "sidecar.git"
                    remote "{remote}"
                    name "backup-{{date}}"
                    {extra}
                }}
            }}"#
        ),
    );
    ws
}

#[test]
fn a_tag_carries_the_evidence_and_reaches_the_remote_once() {
    let ws = setup(None, "");
    let r = ws.run_at("2026-11-28T10:00:00Z", &["run", "release"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let root = ws.path("");
    assert_eq!(
        git(&root, &["--git-dir", "remote.git", "tag", "-l"]),
        "backup-20261128\n"
    );
    let message = git(
        &root,
        &[
            "--git-dir",
            "remote.git",
            "tag",
            "-l",
            "-n20",
            "backup-20261128",
        ],
    );
    for want in [
        "ops-run backup release backup-20261128",
        "dump: none",
        "verify: never",
        "snapshot: none",
    ] {
        assert!(message.contains(want), "{want} not in {message}");
    }
    let head = git(&root, &["--git-dir", "remote.git", "rev-parse", "main"]);
    let tagged = git(
        &root,
        &[
            "--git-dir",
            "remote.git",
            "rev-parse",
            "backup-20261128^{commit}",
        ],
    );
    assert_eq!(head, tagged);
    let a = ws.activities().pop().unwrap();
    assert_eq!(a["type"], "git_tag");
    assert_eq!(a["meta"]["tag"], "backup-20261128");
    assert_eq!(a["meta"]["commit"], head.trim());

    // A new commit, the same day: the name exists, nothing moves.
    ws.write("work/app.txt", "v2\n");
    git(&ws.path("work"), &["commit", "-q", "-am", "second"]);
    git(
        &ws.path("work"),
        &[
            "push",
            "-q",
            &format!("file://{}/remote.git", root.display()),
            "main",
        ],
    );
    let r = ws.run_at("2026-11-28T11:00:00Z", &["run", "release"]);
    assert_eq!(r.code(), 1);
    assert!(
        r.stdout()
            .contains("the tag backup-20261128 exists already"),
        "{}",
        r.stdout()
    );
    assert_eq!(
        git(
            &root,
            &[
                "--git-dir",
                "remote.git",
                "rev-parse",
                "backup-20261128^{commit}"
            ]
        ),
        tagged
    );
}

#[test]
fn seq_counts_tags_of_the_same_day() {
    let ws = setup(None, "");
    let plan = std::fs::read_to_string(ws.path("plans/main.kdl"))
        .unwrap()
        .replace("backup-{date}", "backup-{date}-{seq}");
    ws.write("plans/main.kdl", &plan);
    assert_eq!(
        ws.run_at("2026-11-28T10:00:00Z", &["run", "release"])
            .code(),
        0
    );
    assert_eq!(
        ws.run_at("2026-11-28T11:00:00Z", &["run", "release"])
            .code(),
        0
    );
    assert_eq!(
        git(&ws.path(""), &["--git-dir", "remote.git", "tag", "-l"]),
        "backup-20261128-1\nbackup-20261128-2\n"
    );
}

#[test]
fn the_deploy_key_goes_to_ssh_and_nowhere_else() {
    let ws = Workspace::new();
    let root = ws.path("");
    // An ssh stand-in: records its arguments, then runs the git command it was given locally.
    ws.write("bin/ssh", &format!("#!/bin/sh\necho \"$@\" >> {}/ssh-args.txt\nfor last; do :; done\nexec sh -c \"$last\"\n", root.display()));
    Command::new("chmod")
        .arg("+x")
        .arg(ws.path("bin/ssh"))
        .status()
        .unwrap();
    ws.write(
        "deploy_key",
        "-----BEGIN KEY-----\nKEY-CONTENT-NEVER-SHOWN-42\n-----END KEY-----\n",
    );
    let ws2 = setup(
        Some(&format!(
            "ssh://git@backup-host.invalid{}/remote.git",
            root.display()
        )),
        "deploy-key \"deploy_key\"",
    );
    // setup() made its own workspace; move the stand-in and key there.
    let root2 = ws2.path("");
    std::fs::create_dir_all(root2.join("bin")).unwrap();
    std::fs::write(
        root2.join("bin/ssh"),
        std::fs::read_to_string(ws.path("bin/ssh"))
            .unwrap()
            .replace(&root.display().to_string(), &root2.display().to_string()),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(root2.join("bin/ssh"))
        .status()
        .unwrap();
    std::fs::copy(ws.path("deploy_key"), root2.join("deploy_key")).unwrap();
    let plan = std::fs::read_to_string(ws2.path("plans/main.kdl"))
        .unwrap()
        .replace(&root.display().to_string(), &root2.display().to_string());
    ws2.write("plans/main.kdl", &plan);
    let path = format!("{}/bin:{}", root2.display(), std::env::var("PATH").unwrap());
    let ws2 = ws2.env("PATH", &path);
    let r = ws2.run_at("2026-11-28T10:00:00Z", &["run", "release"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let args = std::fs::read_to_string(root2.join("ssh-args.txt")).unwrap();
    assert!(
        args.contains("-i deploy_key -o IdentitiesOnly=yes -o BatchMode=yes"),
        "{args}"
    );
    assert_eq!(
        git(&root2, &["--git-dir", "remote.git", "tag", "-l"]),
        "backup-20261128\n"
    );
    let all = format!(
        "{}{}{}",
        r.stdout(),
        r.stderr(),
        serde_json::to_string(&ws2.activities()).unwrap()
    );
    assert!(!all.contains("KEY-CONTENT-NEVER-SHOWN-42"));
}

#[test]
fn validate_warns_about_a_deploy_key_ssh_would_refuse() {
    use std::os::unix::fs::PermissionsExt;
    let ws = setup(None, "deploy-key \"keys/deploy\"");
    // Missing: a warning, exit 0 (the key may be created before the first release).
    let r = ws.run(&["plan", "validate"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(
        r.stderr().contains("keys/deploy does not exist"),
        "{}",
        r.stderr()
    );
    // Readable by others: ssh refuses it ("UNPROTECTED PRIVATE KEY FILE").
    ws.write("keys/deploy", "-----BEGIN OPENSSH PRIVATE KEY-----\n");
    let key = ws.path("keys/deploy");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = ws.run(&["plan", "validate"]);
    assert!(
        r.stderr().contains("can be read by other users (mode 644)")
            && r.stderr().contains("chmod 600 keys/deploy"),
        "{}",
        r.stderr()
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = ws.run(&["plan", "validate"]);
    assert!(!r.stderr().contains("keys/deploy"), "{}", r.stderr());
}
