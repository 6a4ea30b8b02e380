//! The Debian package `scripts/test` builds with `cargo deb` (its path in OPS_TEST_DEB): what
//! it installs and with which modes, its control data and conffiles, lintian without errors,
//! and `systemd-analyze verify` on every unit it ships.

use std::path::PathBuf;
use std::process::Command;

fn deb() -> PathBuf {
    PathBuf::from(
        std::env::var("OPS_TEST_DEB").expect("OPS_TEST_DEB: the package scripts/test builds"),
    )
}

fn out(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
#[ignore = "needs the package (cargo deb); run scripts/test"]
fn the_package_installs_the_binary_units_and_private_configuration() {
    let contents = out(Command::new("dpkg-deb").arg("--contents").arg(deb()));
    for (mode, path) in [
        ("-rwxr-xr-x", "./usr/bin/ops-run"),
        (
            "-rw-r--r--",
            "./usr/lib/systemd/system/ops-run-apply.service",
        ),
        ("-rw-r--r--", "./usr/lib/systemd/system/ops-run-apply.timer"),
        (
            "-rw-r--r--",
            "./usr/lib/systemd/system/ops-run-serve.service",
        ),
        ("-rw-r--r--", "./usr/lib/sysusers.d/ops-run.conf"),
        ("-rw-r--r--", "./usr/lib/tmpfiles.d/ops-run.conf"),
        ("-rw-------", "./etc/ops-run/ops-run.env"),
        ("-rw-r--r--", "./etc/ops-run/plans/example.kdl.sample"),
        ("-rw-r--r--", "./usr/share/man/man1/ops-run.1.gz"),
        ("-rw-r--r--", "./usr/share/man/man1/ops-run-plan-apply.1.gz"),
        ("-rw-r--r--", "./usr/share/man/man1/ops-run-doctor.1.gz"),
        ("-rw-r--r--", "./usr/share/man/man5/ops-run.kdl.5.gz"),
        (
            "-rw-r--r--",
            "./usr/share/doc/ops-run/examples/retention.kdl",
        ),
        (
            "-rw-r--r--",
            "./usr/share/bash-completion/completions/ops-run",
        ),
        ("-rw-r--r--", "./usr/share/zsh/vendor-completions/_ops-run"),
        (
            "-rw-r--r--",
            "./usr/share/fish/vendor_completions.d/ops-run.fish",
        ),
    ] {
        assert!(
            contents
                .lines()
                .any(|l| l.starts_with(mode) && l.ends_with(path)),
            "no {mode} {path} in:\n{contents}"
        );
    }
    let info = out(Command::new("dpkg-deb").arg("--info").arg(deb()));
    assert!(
        info.contains("Package: ops-run") && info.contains("Section: admin"),
        "{info}"
    );
    assert!(info.contains("Recommends: restic"), "{info}");
    let dir = tempfile::tempdir().unwrap();
    out(Command::new("dpkg-deb")
        .arg("--control")
        .arg(deb())
        .arg(dir.path().join("control")));
    let conf = std::fs::read_to_string(dir.path().join("control/conffiles")).unwrap();
    assert!(
        conf.lines().any(|l| l == "/etc/ops-run/ops-run.env"),
        "{conf}"
    );
    let postrm = std::fs::read_to_string(dir.path().join("control/postrm")).unwrap();
    assert!(
        postrm.contains("purge") && postrm.contains("/var/lib/ops-run"),
        "{postrm}"
    );
}

#[test]
#[ignore = "needs the package (cargo deb) and lintian; run scripts/test"]
fn lintian_finds_no_errors() {
    let o = Command::new("lintian")
        .args(["--tag-display-limit", "0"])
        .arg(deb())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        !text.lines().any(|l| l.starts_with("E: ")),
        "lintian errors:\n{text}"
    );
}

#[test]
#[ignore = "needs the package (cargo deb) and systemd-analyze; run scripts/test"]
fn systemd_analyze_verifies_every_unit() {
    let dir = tempfile::tempdir().unwrap();
    out(Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb())
        .arg(dir.path()));
    // The units name /usr/bin/ops-run: point them at the extracted binary to verify here.
    let bin = dir.path().join("usr/bin/ops-run");
    let units = dir.path().join("units");
    std::fs::create_dir_all(&units).unwrap();
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir.path().join("usr/lib/systemd/system")).unwrap() {
        let e = e.unwrap();
        let text = std::fs::read_to_string(e.path())
            .unwrap()
            .replace("/usr/bin/ops-run", &bin.display().to_string());
        std::fs::write(units.join(e.file_name()), text).unwrap();
        names.push(units.join(e.file_name()));
    }
    assert_eq!(names.len(), 3);
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&names)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success() && said.trim().is_empty(), "{said}");
    let apply = std::fs::read_to_string(units.join("ops-run-apply.service")).unwrap();
    for hardening in [
        "Type=oneshot",
        "User=ops-run",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "SystemCallFilter=@system-service",
        "EnvironmentFile=-/etc/ops-run/ops-run.env",
    ] {
        assert!(apply.contains(hardening), "no {hardening}");
    }
    let timer = std::fs::read_to_string(units.join("ops-run-apply.timer")).unwrap();
    assert!(timer.contains("Persistent=true") && timer.contains("RandomizedDelaySec"));
}

#[test]
#[ignore = "needs the package (cargo deb) and man-db; run scripts/test"]
fn the_man_pages_say_files_environment_exit_status_and_the_plan_language() {
    let dir = tempfile::tempdir().unwrap();
    out(Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb())
        .arg(dir.path()));
    // man's bold and underline are overstruck characters (`X\bX`): keep the last of each.
    let render = |page: &str| {
        let text = out(Command::new("man")
            .env("MANWIDTH", "100")
            .arg("-l")
            .arg(dir.path().join(page)));
        let mut plain: Vec<char> = Vec::new();
        for c in text.chars() {
            if c == '\u{8}' {
                plain.pop();
            } else {
                plain.push(c);
            }
        }
        plain.into_iter().collect::<String>()
    };
    let main = render("usr/share/man/man1/ops-run.1.gz");
    for wanted in [
        "FILES",
        "/etc/ops-run/ops-run.env",
        "ENVIRONMENT",
        "OPS_BACKUP_BASE",
        "EXIT STATUS",
        "75",
    ] {
        assert!(main.contains(wanted), "no {wanted} in ops-run(1):\n{main}");
    }
    let kdl = render("usr/share/man/man5/ops-run.kdl.5.gz");
    for wanted in ["PLAN LANGUAGE", "stale-after", "monthly=6", "retry-after"] {
        assert!(
            kdl.contains(wanted),
            "no {wanted} in ops-run.kdl(5):\n{kdl}"
        );
    }
}
