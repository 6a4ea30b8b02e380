//! `ops-run doctor [PLAN]`: a pre-flight, as the acting user, that changes nothing. Each
//! database logs in and may create the scratch databases verify, drill and restore need; each
//! restic repository opens (or its folder can be made); every folder the plan writes is
//! writable and, on a systemd install, inside the apply unit's `ReadWritePaths`; the tools
//! answer; there is room for two dumps; the alert channels resolve (nothing is sent). Each
//! problem is one line with its fix. Exit 0, 1 (warnings) or 2 (problems).

use std::path::{Path, PathBuf};

use crate::app::App;
use crate::artifact::layout::{self, Area};
use crate::engines::client::Client;
use crate::error::Failure;
use crate::exec::{self, ProcessSpec};
use crate::plan::compile::CompiledPlan;
use crate::plan::model::{Database, Engine, StepKind};
use crate::session::StepExecutor;
use crate::steps::Context;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Level {
    Ok,
    Warn,
    Problem,
}

/// What doctor found, line by line.
#[derive(Default)]
struct Findings {
    lines: Vec<(Level, String, Option<String>)>,
}

impl Findings {
    fn ok(&mut self, what: String) {
        self.lines.push((Level::Ok, what, None));
    }
    fn warn(&mut self, what: String, fix: impl Into<Option<String>>) {
        self.lines.push((Level::Warn, what, fix.into()));
    }
    fn problem(&mut self, what: String, fix: impl Into<Option<String>>) {
        self.lines.push((Level::Problem, what, fix.into()));
    }
    fn worst(&self) -> Level {
        self.lines.iter().map(|l| l.0).max().unwrap_or(Level::Ok)
    }
}

/// The acting user's name, for the fixes.
fn me() -> String {
    crate::identity::lookup(rustix::process::geteuid().as_raw())
        .map_or_else(|| "the acting user".into(), |u| u.name)
}

pub fn run(app: &App, plan: Option<&str>) -> Result<(), Failure> {
    let (_loaded, compiled) = app.load()?;
    let plans: Vec<&CompiledPlan> = match plan {
        None => compiled.plans.iter().collect(),
        Some(_) => vec![compiled.plan_named(plan)?],
    };
    let redactor = app.redactor(&compiled);
    let executor = StepExecutor {
        app,
        compiled: &compiled,
        redactor: &redactor,
    };
    let mut f = Findings::default();
    f.ok(format!(
        "acting as {} (uid {}); state {}",
        me(),
        rustix::process::geteuid().as_raw(),
        app.state.value.display()
    ));
    match &app.env_file {
        Some(file) => f.ok(format!("env file {}", file.display())),
        None => {
            let installed = crate::app::installed_env_file();
            if installed.exists() {
                f.warn(
                    format!(
                        "cannot read {} as {}: its variables are missing here",
                        installed.display(),
                        me()
                    ),
                    Some(
                        "run doctor as root (it reads the file, then acts as the state's owner)"
                            .into(),
                    ),
                );
            }
        }
    }
    state_folder(app, &mut f);
    let units = ReadWritePaths::of_apply_unit();
    for p in plans {
        let steps: Vec<usize> = (0..compiled.steps.len())
            .filter(|&i| std::ptr::eq(&compiled.plans[compiled.steps[i].plan], p))
            .collect();
        let Some(&first) = steps.first() else {
            f.warn(format!("plan {}: no steps", p.decl.name.value), None);
            continue;
        };
        let ctx = executor.context(first);
        folders(&ctx, p, units.as_ref(), &mut f);
        databases(&executor, p, &steps, &mut f);
        physical(app, &executor, p, &steps, &mut f);
        repositories(&executor, &steps, units.as_ref(), &mut f);
        tools(&ctx, p, &mut f);
        space(p, &mut f);
        channels(app, p, &mut f);
        encryption(app, p, &mut f);
    }
    for (level, what, fix) in &f.lines {
        let tag = match level {
            Level::Ok => "ok     ",
            Level::Warn => "warn   ",
            Level::Problem => "PROBLEM",
        };
        crate::outln!("{tag} {}", redactor.redact(what));
        if let Some(fix) = fix {
            for line in fix.lines() {
                crate::outln!("          fix: {}", redactor.redact(line));
            }
        }
    }
    let count = |l: Level| f.lines.iter().filter(|x| x.0 == l).count();
    crate::outln!(
        "{} problem(s), {} warning(s)",
        count(Level::Problem),
        count(Level::Warn)
    );
    match f.worst() {
        Level::Ok => Ok(()),
        Level::Warn => Err(Failure::Checks(1)),
        Level::Problem => Err(Failure::Checks(2)),
    }
}

/// The nearest folder of `path` that exists (itself when it does).
fn existing_ancestor(path: &Path) -> Option<PathBuf> {
    path.ancestors().find(|a| a.exists()).map(Path::to_path_buf)
}

fn writable(path: &Path) -> bool {
    rustix::fs::access(
        path,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
    )
    .is_ok()
}

/// A folder the acting user must write: it is writable, or can be made.
fn folder(what: &str, path: &Path, f: &mut Findings) {
    if path.is_dir() {
        match writable(path) {
            true => f.ok(format!("{what} {} is writable", path.display())),
            false => f.problem(
                format!("{what} {} is not writable by {}", path.display(), me()),
                Some(format!("chown -R {} {}", me(), path.display())),
            ),
        }
        return;
    }
    match existing_ancestor(path) {
        Some(a) if writable(&a) => f.ok(format!(
            "{what} {} does not exist yet; {} may create it",
            path.display(),
            a.display()
        )),
        _ => f.problem(
            format!(
                "{what} {} does not exist and {} cannot create it",
                path.display(),
                me()
            ),
            Some(format!("install -d -o {} -m 0750 {}", me(), path.display())),
        ),
    }
}

fn state_folder(app: &App, f: &mut Findings) {
    if let Some(dir) = app
        .state
        .value
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        folder("the state's folder", dir, f);
    }
}

/// The apply unit's `ReadWritePaths`, on a systemd install (`systemctl show` when it
/// answers, else the unit file and its drop-ins).
struct ReadWritePaths(Vec<PathBuf>);

impl ReadWritePaths {
    const UNIT: &'static str = "ops-run-apply.service";

    fn of_apply_unit() -> Option<ReadWritePaths> {
        let unit = Path::new("/usr/lib/systemd/system").join(Self::UNIT);
        let shown = exec::run_capturing(
            &ProcessSpec::new(
                "systemctl",
                ["show", "-p", "ReadWritePaths", "--value", Self::UNIT],
            ),
            &Default::default(),
        );
        if shown.0.success() && !shown.1.is_empty() {
            return Some(Self::parse(&String::from_utf8_lossy(&shown.1)));
        }
        if !unit.exists() {
            return None;
        }
        let mut text = std::fs::read_to_string(&unit).unwrap_or_default();
        let dropins = Path::new("/etc/systemd/system").join(format!("{}.d", Self::UNIT));
        let mut confs: Vec<PathBuf> = std::fs::read_dir(dropins)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        confs.sort();
        for c in confs {
            text.push('\n');
            text.push_str(&std::fs::read_to_string(c).unwrap_or_default());
        }
        let values: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("ReadWritePaths="))
            .collect();
        Some(Self::parse(&values.join(" ")))
    }

    fn parse(text: &str) -> ReadWritePaths {
        ReadWritePaths(
            text.split_whitespace()
                .map(|p| PathBuf::from(p.trim_start_matches(['-', '+'])))
                .collect(),
        )
    }

    fn covers(&self, path: &Path) -> bool {
        let path = std::path::absolute(path).unwrap_or(path.to_path_buf());
        self.0.iter().any(|rw| path.starts_with(rw))
    }

    fn check(&self, what: &str, path: &Path, f: &mut Findings) {
        if !self.covers(path) {
            f.problem(
                format!(
                    "{what} {} is outside the ReadWritePaths of {} ({}): the timer's apply cannot write it",
                    path.display(),
                    Self::UNIT,
                    self.0
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                Some(format!(
                    "systemctl edit {} and add:\n[Service]\nReadWritePaths={}",
                    Self::UNIT,
                    path.display()
                )),
            );
        }
    }
}

fn folders(ctx: &Context, p: &CompiledPlan, units: Option<&ReadWritePaths>, f: &mut Findings) {
    let base = Path::new(&p.base.value);
    folder(&format!("plan {}: the base", p.decl.name.value), base, f);
    if let Some(u) = units {
        u.check(&format!("plan {}: the base", p.decl.name.value), base, f);
    }
    // Every area folder a step writes sits under the base; a report `out` may not.
    let _ = (ctx, Area::ALL);
}

/// The `database` blocks of this plan that its steps use.
/// One query's answer (`a|b`), or why there is none.
fn ask(ctx: &Context, db: &Database, sql: &str) -> Result<String, String> {
    let client = Client::new(&ctx.target(db).map_err(|e| e.to_string())?, &ctx.plan.tools)
        .map_err(|e| e.to_string())?;
    let name = db.dbname.as_ref().map_or("postgres", |d| d.value.as_str());
    let mut spec = client.sql(name, sql);
    spec.timeout = Some(std::time::Duration::from_secs(30));
    let (r, out) = exec::run_capturing(&spec, ctx.redactor);
    match r.exit.reason("psql") {
        None => Ok(String::from_utf8_lossy(&out).trim().to_string()),
        Some(why) => Err(format!("{why}: {}", r.tail.trim())),
    }
}

/// Base backups and WAL archiving: the role may replicate, the server archives into the
/// `wal` step's folder, and that folder has the group's modes.
fn physical(
    app: &App,
    executor: &StepExecutor,
    p: &CompiledPlan,
    steps: &[usize],
    f: &mut Findings,
) {
    for &i in steps {
        let s = &executor.compiled.steps[i];
        let ctx = executor.context(i);
        let (database, label) = match &s.decl.kind {
            StepKind::BaseBackup(b) => (b.database.as_ref(), format!("base-backup {}", s.id)),
            StepKind::Wal(w) => (w.database.as_ref(), format!("wal {}", s.id)),
            _ => continue,
        };
        let Some(db) = database.and_then(|d| ctx.database(&d.value).ok()) else {
            continue;
        };
        if let StepKind::BaseBackup(_) = &s.decl.kind {
            match ask(
                &ctx,
                db,
                "SELECT r.rolreplication OR r.rolsuper, current_user, current_setting('wal_level') \
                 FROM pg_roles r WHERE r.rolname = current_user",
            ) {
                Ok(a) => {
                    let parts: Vec<&str> = a.split('|').collect();
                    let user = parts.get(1).copied().unwrap_or("the role");
                    if parts.first() != Some(&"t") {
                        f.problem(
                            format!("{label}: role {user} may not replicate (pg_basebackup needs REPLICATION)"),
                            Some(format!("ALTER ROLE {user} REPLICATION; and a `host replication {user} …` line in pg_hba.conf")),
                        );
                    } else if parts.get(2) == Some(&"minimal") {
                        f.problem(
                            format!("{label}: wal_level is minimal"),
                            Some("set wal_level = replica in postgresql.conf and restart".into()),
                        );
                    } else {
                        f.ok(format!("{label}: role {user} may replicate"));
                    }
                }
                Err(e) => f.problem(format!("{label}: cannot ask the server: {e}"), None),
            }
            continue;
        }
        let dir = p.dir(s.name(), Area::Wal);
        let lines = crate::steps::wal::conf_lines(&p.decl.name.value, s.name(), &app.plans);
        let fix = Some(format!(
            "set in postgresql.conf (then restart):\n{}",
            lines.join("\n")
        ));
        match ask(
            &ctx,
            db,
            "SELECT current_setting('archive_mode'), current_setting('archive_command'), \
             current_setting('archive_timeout')",
        ) {
            Ok(a) => {
                let parts: Vec<&str> = a.splitn(3, '|').collect();
                let wanted = format!("wal push {}/{}", p.decl.name.value, s.name());
                if parts.first().is_none_or(|m| *m == "off") {
                    f.problem(
                        format!("{label}: archive_mode is off: nothing is archived"),
                        fix,
                    );
                } else if !parts.get(1).is_some_and(|c| c.contains(&wanted)) {
                    f.problem(
                        format!(
                            "{label}: archive_command does not archive into this step: {}",
                            parts.get(1).copied().unwrap_or("")
                        ),
                        fix,
                    );
                } else {
                    f.ok(format!(
                        "{label}: the server archives into {}",
                        dir.display()
                    ));
                }
            }
            Err(e) => f.problem(format!("{label}: cannot ask the server: {e}"), None),
        }
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(&dir) {
            Ok(m) if m.permissions().mode() & 0o7777 == crate::steps::wal::DIR_MODE => {
                f.ok(format!("{label}: {} has the group's modes", dir.display()))
            }
            Ok(m) => f.warn(
                format!(
                    "{label}: {} has mode {:o}, not {:o}",
                    dir.display(),
                    m.permissions().mode() & 0o7777,
                    crate::steps::wal::DIR_MODE
                ),
                Some(format!("ops-run run {} (it mends the modes)", s.id)),
            ),
            Err(_) => f.problem(
                format!("{label}: {} does not exist: every push fails", dir.display()),
                Some(format!(
                    "ops-run run {} (it creates the folder, mode 2770); the server's user joins {}'s group",
                    s.id,
                    me()
                )),
            ),
        }
    }
}

fn databases(executor: &StepExecutor, p: &CompiledPlan, steps: &[usize], f: &mut Findings) {
    for db in &p.decl.databases {
        let used_by: Vec<&str> = steps
            .iter()
            .map(|&i| &executor.compiled.steps[i])
            .filter(|s| match &s.decl.kind {
                StepKind::Dump(d) => d
                    .database
                    .as_ref()
                    .is_some_and(|n| n.value == db.name.value),
                _ => false,
            })
            .map(|s| s.name())
            .collect();
        if used_by.is_empty() {
            continue;
        }
        let dump_names: Vec<&str> = used_by.clone();
        let restores =
            steps
                .iter()
                .map(|&i| &executor.compiled.steps[i])
                .any(|s| match &s.decl.kind {
                    StepKind::Verify(v) => v
                        .dump
                        .as_ref()
                        .is_some_and(|d| dump_names.contains(&d.value.as_str())),
                    StepKind::Drill(d) => d
                        .restore
                        .dump
                        .as_ref()
                        .is_some_and(|d| dump_names.contains(&d.value.as_str())),
                    _ => false,
                });
        let ctx = executor.context(steps[0]);
        database(&ctx, db, restores, f);
    }
}

fn database(ctx: &Context, db: &Database, restores: bool, f: &mut Findings) {
    let label = format!(
        "plan {}: database {}",
        ctx.plan.decl.name.value, db.name.value
    );
    let Some(engine) = db.engine.as_ref().map(|e| e.value) else {
        return;
    };
    if engine == Engine::Sqlite {
        let path = db.path.as_ref().map_or(String::new(), |p| p.value.clone());
        match std::fs::File::open(&path) {
            Ok(_) => f.ok(format!("{label}: {path} can be read")),
            Err(e) => f.problem(
                format!("{label}: cannot read {path}: {e}"),
                Some(format!(
                    "let {} read it (its group, or an ACL: setfacl -m u:{}:r {path})",
                    me(),
                    me()
                )),
            ),
        }
        return;
    }
    let client = match ctx
        .target(db)
        .map_err(|e| e.to_string())
        .and_then(|t| Client::new(&t, &ctx.plan.tools).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            f.problem(format!("{label}: {e}"), None);
            return;
        }
    };
    let name = db
        .dbname
        .as_ref()
        .map_or(client.maintenance_db(), |n| n.value.as_str());
    let r = exec::run(&client.sql(name, "SELECT 1"), ctx.redactor);
    if !r.success() {
        let why = crate::health::cause(&r.tail).unwrap_or_default();
        f.problem(
            format!("{label}: cannot log in to {name}: {why}"),
            Some("check the host, port, user and password the plan names (and the server's pg_hba.conf or grants)".into()),
        );
        return;
    }
    f.ok(format!("{label}: logs in to {name}"));
    if !restores {
        return;
    }
    let user = db.user.as_ref().map_or("the role", |u| u.value.as_str());
    let (sql, fix) = match engine {
        Engine::Postgres => (
            "SELECT (rolcreatedb OR rolsuper)::int FROM pg_catalog.pg_roles WHERE rolname = current_user".to_string(),
            format!("ALTER ROLE {user} CREATEDB;   -- as a superuser: verify and drill restore into a scratch database"),
        ),
        Engine::Mysql | Engine::Mariadb => (
            "SELECT COUNT(DISTINCT PRIVILEGE_TYPE) = 2 FROM information_schema.USER_PRIVILEGES WHERE PRIVILEGE_TYPE IN ('CREATE', 'DROP') AND GRANTEE = CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')".to_string(),
            format!("GRANT CREATE, DROP ON *.* TO '{user}'@'%';   -- verify and drill restore into a scratch database"),
        ),
        Engine::Sqlite => return,
    };
    let r = exec::run(&client.sql(name, &sql), ctx.redactor);
    let granted = crate::steps::restore_test::number(&r) == Some(1);
    match (r.success(), granted) {
        (true, true) => f.ok(format!(
            "{label}: {user} may create the scratch databases verify and drill need"
        )),
        (true, false) => f.problem(
            format!(
                "{label}: {user} may not create databases: every verify, drill and restore will fail"
            ),
            Some(fix),
        ),
        (false, _) => f.warn(
            format!(
                "{label}: cannot tell whether {user} may create databases: {}",
                crate::health::cause(&r.tail).unwrap_or_default()
            ),
            None,
        ),
    }
}

/// The restic repositories of the plan's snapshot and copy steps.
fn repositories(
    executor: &StepExecutor,
    steps: &[usize],
    units: Option<&ReadWritePaths>,
    f: &mut Findings,
) {
    for &i in steps {
        let ctx = executor.context(i);
        let (envs, init) = match &ctx.step.decl.kind {
            StepKind::Snapshot(s) => (
                crate::steps::restic::snapshot_credentials(&ctx, s).map(|e| vec![e]),
                s.init.as_ref().is_some_and(|i| i.value),
            ),
            StepKind::Copy(c) => (
                crate::steps::restic::copy_credentials(&ctx, c).map(|e| vec![e]),
                c.init.as_ref().is_some_and(|i| i.value),
            ),
            _ => continue,
        };
        let label = format!("{}: repository", ctx.step.id);
        let envs = match envs {
            Ok(e) => e,
            Err(e) => {
                f.problem(format!("{label}: {e}"), None);
                continue;
            }
        };
        for env in envs {
            let repo = env
                .iter()
                .find(|(k, _)| k == "RESTIC_REPOSITORY")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let shown = crate::steps::restic::without_password(&repo);
            let local = (!repo.contains(':') || repo.starts_with("local:"))
                .then(|| PathBuf::from(repo.trim_start_matches("local:")));
            let mut spec =
                crate::steps::restic::restic(&ctx, &env, &["cat".into(), "config".into()]);
            spec.timeout = Some(std::time::Duration::from_secs(60));
            let r = exec::run(&spec, ctx.redactor);
            if r.success() {
                f.ok(format!("{label} {shown} opens"));
            } else if let Some(dir) = local.as_ref().filter(|d| !d.join("config").exists()) {
                // Not there yet: `init #true` makes it on the first run, if it may.
                match (
                    init,
                    existing_ancestor(dir).is_some_and(|a| writable(&a))
                        || (dir.is_dir() && writable(dir)),
                ) {
                    (true, true) => f.ok(format!(
                        "{label} {shown} does not exist yet; the first run creates it (init #true)"
                    )),
                    (true, false) => f.problem(
                        format!(
                            "{label} {shown} does not exist and {} cannot create it",
                            me()
                        ),
                        Some(format!("install -d -o {} -m 0750 {}", me(), dir.display())),
                    ),
                    (false, _) => f.problem(
                        format!("{label} {shown} is not a restic repository"),
                        Some(format!(
                            "restic init --repo {}, or `init #true` on the step",
                            dir.display()
                        )),
                    ),
                }
            } else {
                f.problem(
                    format!(
                        "{label} {shown} does not open: {}",
                        crate::health::cause(&r.tail).unwrap_or_default()
                    ),
                    Some("check the repository, its password and the network".into()),
                );
            }
            if let (Some(dir), Some(u)) = (&local, units) {
                u.check(&label, dir, f);
            }
        }
    }
}

/// Each tool the plan runs answers `--version` (restic: `version`).
fn tools(ctx: &Context, p: &CompiledPlan, f: &mut Findings) {
    let mut wanted: Vec<(&str, &str, &str)> = Vec::new();
    for db in &p.decl.databases {
        match db.engine.as_ref().map(|e| e.value) {
            Some(Engine::Postgres) => {
                wanted.push(("pg-dump", "pg_dump", "postgresql-client"));
                wanted.push(("psql", "psql", "postgresql-client"));
            }
            Some(Engine::Mariadb) => {
                wanted.push(("mariadb-dump", "mariadb-dump", "mariadb-client"));
                wanted.push(("mariadb", "mariadb", "mariadb-client"));
            }
            Some(Engine::Mysql) => {
                wanted.push(("mariadb-dump", "mysqldump", "mariadb-client"));
                wanted.push(("mariadb", "mysql", "mariadb-client"));
            }
            Some(Engine::Sqlite) | None => {}
        }
    }
    if p.decl.steps.iter().any(|s| {
        matches!(
            s.kind,
            StepKind::Snapshot(_) | StepKind::Copy(_) | StepKind::Check(_) | StepKind::Drill(_)
        )
    }) {
        wanted.push(("restic", "restic", "restic"));
    }
    if p.decl
        .steps
        .iter()
        .any(|s| matches!(s.kind, StepKind::GitTag(_)))
    {
        wanted.push(("git", "git", "git"));
    }
    wanted.sort();
    wanted.dedup();
    for (key, default, package) in wanted {
        let program = crate::engines::tool(&p.tools, key, default);
        let version = if key == "restic" {
            "version"
        } else {
            "--version"
        };
        let mut spec = ProcessSpec::new(&program, [version]);
        spec.timeout = Some(std::time::Duration::from_secs(20));
        let r = exec::run(&spec, ctx.redactor);
        match r.success() {
            true => f.ok(format!(
                "tool {program}: {}",
                r.tail.lines().next().unwrap_or_default().trim()
            )),
            false => f.problem(
                format!(
                    "tool {program} does not run: {}",
                    r.exit.reason(&program).unwrap_or_default()
                ),
                Some(format!(
                    "apt-get install {package} (or set its path in the plan's `tools` block)"
                )),
            ),
        }
    }
}

/// Room for two more of the newest dump on the base's file system.
fn space(p: &CompiledPlan, f: &mut Findings) {
    let base = Path::new(&p.base.value);
    let Some(at) = existing_ancestor(base) else {
        return;
    };
    let Ok(st) = rustix::fs::statvfs(&at) else {
        return;
    };
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let newest = p
        .decl
        .steps
        .iter()
        .filter(|s| matches!(s.kind, StepKind::Dump(_)))
        .filter_map(|s| {
            let dir = p.dir(&s.name.value, Area::Dumps);
            layout::good_dumps(&dir, p.timezone.value, chrono::Utc::now())
                .next()
                .and_then(|d| std::fs::metadata(&d.path).ok())
                .map(|m| m.len())
        })
        .sum::<u64>();
    let need = newest.saturating_mul(2);
    let size = crate::units::size::format;
    if newest > 0 && free < need {
        f.warn(
            format!(
                "plan {}: {} free on {}, less than two of the newest dumps ({})",
                p.decl.name.value,
                size(free),
                at.display(),
                size(need)
            ),
            Some("free space, or keep fewer dumps (`keep`)".into()),
        );
    } else {
        f.ok(format!(
            "plan {}: {} free on {}",
            p.decl.name.value,
            size(free),
            at.display()
        ));
    }
}

/// The alert channels resolve (their secrets are set, their addresses parse); none is sent.
fn channels(app: &App, p: &CompiledPlan, f: &mut Findings) {
    for c in crate::alert::channels(app.alerting(), p) {
        match c {
            Ok(ch) => f.ok(format!(
                "plan {}: alert channel {} resolves",
                p.decl.name.value, ch.name
            )),
            Err(e) => f.problem(
                format!("plan {}: alert channel: {e}", p.decl.name.value),
                Some(
                    "set the variable or file it names (ops-run.env), then `ops-run alerts test`"
                        .into(),
                ),
            ),
        }
    }
}

/// Encrypted dumps: their recipients resolve (a missing recipients file would fail every
/// dump), and the identity of each verify or drill of them is readable and is one of their
/// recipients (else every restore test would fail).
fn encryption(app: &App, p: &CompiledPlan, f: &mut Findings) {
    use crate::artifact::seal;
    let plan = &p.decl.name.value;
    for step in &p.decl.steps {
        let (what, e) = match &step.kind {
            StepKind::Dump(d) => ("dump", d.encrypt.as_ref()),
            StepKind::BaseBackup(b) => ("base-backup", b.encrypt.as_ref()),
            _ => continue,
        };
        let Some(e) = e else { continue };
        let to: Vec<String> = match e.resolve() {
            Ok(r) => r.iter().map(|r| r.to_string()).collect(),
            Err(why) => {
                f.problem(
                    format!(
                        "plan {plan}: dump {} cannot encrypt: {why}",
                        step.name.value
                    ),
                    Some("fix the recipients file, or name the recipients in the plan".into()),
                );
                continue;
            }
        };
        f.ok(format!(
            "plan {plan}: {what} {} is encrypted to {} recipient(s)",
            step.name.value,
            to.len()
        ));
        for (s, v) in p.decl.restore_tests_of(&step.name.value) {
            let Some(identity) = &v.identity else {
                continue;
            };
            let text = match app.env.resolve(&identity.source) {
                Ok(t) => t,
                Err(e) => {
                    f.problem(
                        format!(
                            "plan {plan}: {} cannot read its identity: {e}",
                            s.name.value
                        ),
                        Some("the restore test of an encrypted dump needs it".into()),
                    );
                    continue;
                }
            };
            let keys = seal::public_keys(&text);
            match keys.iter().find(|k| to.contains(k)) {
                Some(k) => f.ok(format!(
                    "plan {plan}: {} decrypts {what} {} (identity of {k}); the identity is readable on this host",
                    s.name.value, step.name.value
                )),
                None => f.problem(
                    format!(
                        "plan {plan}: the identity of {} is not a recipient of {what} {}: its restore tests would fail",
                        s.name.value, step.name.value
                    ),
                    Some(format!(
                        "encrypt to its public key (age-keygen -y KEYFILE: {}) or give the identity of one of: {}",
                        if keys.is_empty() { "none found".to_string() } else { keys.join(", ") },
                        to.join(", ")
                    )),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_write_paths_cover_what_is_under_them() {
        let rw = ReadWritePaths::parse("/var/lib/ops-run -/srv/backups +/data");
        assert!(rw.covers(Path::new("/srv/backups/crm")));
        assert!(rw.covers(Path::new("/data")));
        assert!(!rw.covers(Path::new("/srv/restic/crm")));
        assert!(!rw.covers(Path::new("/srv/backupsX")));
        let mut f = Findings::default();
        rw.check("the base", Path::new("/backup/crm"), &mut f);
        let (level, _, fix) = &f.lines[0];
        assert_eq!(*level, Level::Problem);
        assert!(
            fix.as_deref()
                .unwrap()
                .contains("ReadWritePaths=/backup/crm")
        );
    }
}
