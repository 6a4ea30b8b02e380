//! A packaged install, laid out in a temporary root (`OPS_INSTALL_ROOT`): without `--plans`,
//! `--state` or `--env-file`, ops-run finds `/etc/ops-run/plans`, `/var/lib/ops-run/state.db`
//! and `/etc/ops-run/ops-run.env`. Run as root against a state that belongs to the service
//! user, it acts as that user; a third user is refused.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::harness::BIN;

/// A temporary system root with the package's folders, and a working directory without
/// `plans/` beside it.
struct Installed {
    dir: tempfile::TempDir,
}

impl Installed {
    fn new(plan: &str, env: &str) -> Installed {
        let dir = tempfile::tempdir().unwrap();
        let i = Installed { dir };
        let plan = plan.replace("BASE", &i.path("srv/backups/app").display().to_string());
        let plan = plan.replace("APPDB", &i.path("srv/app/app.db").display().to_string());
        i.write("etc/ops-run/plans/app.kdl", &plan);
        i.write("etc/ops-run/ops-run.env", env);
        std::fs::set_permissions(
            i.path("etc/ops-run/ops-run.env"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        for d in ["var/lib/ops-run", "srv/backups", "srv/app", "work"] {
            std::fs::create_dir_all(i.path(d)).unwrap();
        }
        let db = rusqlite::Connection::open(i.path("srv/app/app.db")).unwrap();
        db.execute_batch(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);
             INSERT INTO users (email) VALUES ('a@example.com');",
        )
        .unwrap();
        i
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// `ops-run ARGS` in `work/` (no `plans/` there), with no path given.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(self.path("work"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.path("work"))
            .env("OPS_INSTALL_ROOT", self.dir.path())
            .env("OPS_NOW", "2026-11-28T10:00:00Z")
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }
}

const PLAN: &str = r#"plan app {
    base "BASE"
    database main {
        engine sqlite
        path "APPDB"
    }
    dump db {
        database main
    }
    verify restore {
        dump db
    }
    command greet {
        run "sh" "-c" "test \"$SECRET_GREETING\" = hello"
        env {
            SECRET_GREETING env=SECRET_GREETING
        }
    }
}"#;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn an_installed_layout_is_found_without_any_path() {
    let i = Installed::new(PLAN, "SECRET_GREETING=hello\n");
    let o = i.run(&["plan", "validate"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!text(&o).contains("not set"), "{}", text(&o));
    let o = i.run(&["--help"]);
    assert!(
        text(&o).contains(&format!(
            "[default here: {}]",
            i.path("etc/ops-run/ops-run.env").display()
        )),
        "{}",
        text(&o)
    );
    // The env file's variable reaches the step; the state is the installed one.
    let o = i.run(&["run", "greet"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(i.path("var/lib/ops-run/state.db").exists());
    let o = i.run(&["status"]);
    assert!(!text(&o).contains("cannot read plans"), "{}", text(&o));
    assert!(text(&o).contains("app/db"), "{}", text(&o));
}

fn chown_tree(path: &Path, uid: u32) {
    let status = Command::new("chown")
        .args(["-R", &format!("{uid}:{uid}")])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// `ops-run ARGS` as another user (setpriv, util-linux).
fn as_user(i: &Installed, uid: u32, args: &[&str]) -> Output {
    let mut c = i.command(args);
    let program = c.get_program().to_owned();
    let mut s = Command::new("setpriv");
    s.args([
        format!("--reuid={uid}"),
        format!("--regid={uid}"),
        "--clear-groups".into(),
    ])
    .arg(program)
    .args(c.get_args())
    .current_dir(i.path("work"))
    .env_clear()
    .envs(c.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
    .stdin(Stdio::null());
    c = s;
    c.output().unwrap()
}

#[test]
#[ignore = "needs root (scripts/test runs as root in CI)"]
fn root_acts_as_the_state_owner_and_a_third_user_is_refused() {
    assert!(
        rustix::process::geteuid().is_root(),
        "run as root: scripts/test does"
    );
    const SERVICE: u32 = 65534; // nobody, standing for the package's ops-run
    let i = Installed::new(PLAN, "SECRET_GREETING=hello\n");
    std::fs::set_permissions(i.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for d in ["var/lib/ops-run", "srv/backups", "srv/app"] {
        chown_tree(&i.path(d), SERVICE);
    }
    // Root runs a dump by hand: everything it writes is the service's.
    let o = i.run(&["run", "db"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut owned = Vec::new();
    let mut stack = vec![i.path("srv/backups"), i.path("var/lib/ops-run")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            owned.push((e.path(), m.uid(), m.gid()));
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    assert!(
        owned
            .iter()
            .any(|(p, ..)| p.to_string_lossy().ends_with(".sql.gz"))
    );
    for (p, uid, gid) in &owned {
        assert_eq!(
            (*uid, *gid),
            (SERVICE, SERVICE),
            "{} is not the service's",
            p.display()
        );
    }
    // The service user's next verify reads it.
    let o = as_user(&i, SERVICE, &["run", "restore"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // A third user may not write: one line naming the owner.
    let o = as_user(&i, 1, &["run", "db"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(
        said.contains("belongs to nobody") && said.contains("sudo -u nobody"),
        "{said}"
    );
}
