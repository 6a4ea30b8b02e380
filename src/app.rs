//! What every command shares: the environment, the clock, plan loading, the store, redaction.

use std::path::{Path, PathBuf};

pub use crate::exec::redact::{url_password, url_password_forms};
pub use crate::identity::host_name;

use crate::cli::Cli;
use crate::clock::{Clock, stamp};
use crate::error::Failure;
use crate::exec::redact::Redactor;
use crate::plan::compile::Compiled;
use crate::plan::settings::{Env, EnvError, Origin, Setting};
use crate::plan::validate::secret_values;
use crate::plan::{self, Loaded};
use crate::store::{self, Store};

pub struct App {
    pub plans: PathBuf,
    /// The env file in effect (`--env-file`, or the installed one), if any.
    pub env_file: Option<PathBuf>,
    pub env: Env,
    pub clock: Clock,
    pub state: Setting<PathBuf>,
}

/// Seed variables whose values are secrets even when no plan refers to them.
/// Variables whose values are secrets wherever they appear: the seed's, and the credentials
/// restic's backends read from the environment (a copy's destination).
const SECRET_VARS: [&str; 12] = [
    "RESTIC_PASSWORD",
    "ALERT_SLACK_WEBHOOK",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "B2_ACCOUNT_KEY",
    "AZURE_ACCOUNT_KEY",
    "AZURE_ACCOUNT_SAS",
    "GOOGLE_ACCESS_TOKEN",
    "OS_PASSWORD",
    "OS_APPLICATION_CREDENTIAL_SECRET",
    "ST_KEY",
    "RESTIC_REST_PASSWORD",
];

/// Root acting on a state that belongs to another user becomes that user (see `identity`);
/// a third user may read, not write.
fn act_as_owner(state: &Path, writes: bool, env: &mut Env) -> Result<(), Failure> {
    use crate::identity::{Acting, become_user, decide};
    match decide(state, rustix::process::geteuid().as_raw()) {
        Acting::Itself => Ok(()),
        Acting::Become(user) => {
            become_user(&user).map_err(Failure::Runtime)?;
            // Tools look for their caches under HOME (restic: ~/.cache/restic).
            let home = user.home.display().to_string();
            // SAFETY: no other thread of ops-run reads or writes the environment yet.
            unsafe {
                std::env::set_var("HOME", &home);
                std::env::set_var("USER", &user.name);
                std::env::set_var("LOGNAME", &user.name);
            }
            env.set("HOME", &home);
            env.set("USER", &user.name);
            env.set("LOGNAME", &user.name);
            Ok(())
        }
        Acting::Foreign { owner } if writes => Err(Failure::Usage(format!(
            "the state {} belongs to {owner}: run this as {owner} (sudo -u {owner} ops-run …) or as root, which acts as {owner}",
            state.display()
        ))),
        Acting::Foreign { .. } => Ok(()),
    }
}

/// Why the plans could not be loaded, and the `ops-run/plans` check when they do not load.
pub type PlansBroken = Box<(Failure, Option<crate::health::Check>)>;

/// The diagnostics of plans that do not load, one `file:line:col: message` line each (no
/// snippet: a line of a plan may hold a secret written in it), at most 20.
pub fn plan_problems(rendered: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut message: Option<&str> = None;
    for line in rendered.lines() {
        if let Some(m) = line.strip_prefix("error: ") {
            message = Some(m);
        } else if let (Some(m), Some(at)) = (message, line.trim_start().strip_prefix("--> ")) {
            out.push(format!("{}: {m}", at.trim()));
            message = None;
        } else if let Some(m) = message.take() {
            out.push(m.to_string());
        }
    }
    if let Some(m) = message {
        out.push(m.to_string());
    }
    let more = out.len().saturating_sub(20);
    out.truncate(20);
    if more > 0 {
        out.push(format!("… and {more} more"));
    }
    if out.is_empty() {
        out.push(
            rendered
                .lines()
                .next()
                .unwrap_or("the plans do not load")
                .to_string(),
        );
    }
    out.join("\n")
}

/// Where a packaged install keeps things, under `OPS_INSTALL_ROOT` (tests point it at a
/// temporary folder laid out like a system; unset, `/`).
fn installed(path: &str) -> PathBuf {
    let root = std::env::var_os("OPS_INSTALL_ROOT").unwrap_or_else(|| "/".into());
    Path::new(&root).join(path.trim_start_matches('/'))
}

/// The plans folder when neither `--plans` nor `OPS_PLANS` names one: `./plans` in a source
/// checkout (or any folder that has one), else the package's `/etc/ops-run/plans`.
pub fn default_plans() -> PathBuf {
    let local = PathBuf::from("plans");
    let system = installed("/etc/ops-run/plans");
    if !local.exists() && system.is_dir() {
        system
    } else {
        local
    }
}

/// The env file when `--env-file` names none: the package's `/etc/ops-run/ops-run.env`, when
/// it exists and this user may read it (the units read it themselves, as root).
pub fn default_env_file() -> Option<PathBuf> {
    let path = installed_env_file();
    std::fs::File::open(&path).is_ok().then_some(path)
}

/// The package's env file, whether or not it exists.
pub fn installed_env_file() -> PathBuf {
    installed("/etc/ops-run/ops-run.env")
}

/// The state database when neither `--state` nor `OPS_STATE` names one.
pub fn default_state() -> PathBuf {
    installed(store::DEFAULT_PATH)
}

impl App {
    pub fn new(cli: &Cli) -> Result<App, Failure> {
        let env_file = cli.env_file.clone().or_else(default_env_file);
        let mut env = Env::load(env_file.as_deref())?;
        let clock = Clock::from_env(env.get("OPS_NOW")).map_err(EnvError::from)?;
        let state = match (&cli.state, env.get("OPS_STATE")) {
            (Some(p), _) => Setting::new(p.clone(), Origin::Flag("--state".into())),
            (None, Some(p)) => Setting::new(PathBuf::from(p), Origin::Env("OPS_STATE".into())),
            (None, None) => Setting::new(default_state(), Origin::Default),
        };
        // The env file is read (as root, when it is root's); from here on, the state's owner
        // acts.
        if cli.command.acts() {
            act_as_owner(&state.value, cli.command.writes(), &mut env)?;
        }
        crate::engines::secret_file::beside(&state.value);
        Ok(App {
            plans: cli.plans.clone().unwrap_or_else(default_plans),
            env_file,
            env,
            clock,
            state,
        })
    }

    /// What alerting needs of this process.
    pub fn alerting(&self) -> crate::alert::Context<'_> {
        crate::alert::Context {
            env: &self.env,
            clock: &self.clock,
        }
    }

    /// Loads plans; errors are rendered into `Failure::Plan` (exit 2, nothing runs).
    pub fn load(&self) -> Result<(Loaded, Compiled), Failure> {
        let mut loaded = plan::load(&self.plans, &self.env, &crate::steps::KINDS)?;
        match loaded.compiled.take() {
            Some(c) if !loaded.has_errors() => Ok((loaded, c)),
            _ => {
                let errors = loaded.diagnostics.iter().filter(|d| d.is_error()).count();
                let mut out = loaded.render_diagnostics();
                out.push_str(&format!(
                    "\n{errors} error{} in {}; nothing ran\n",
                    if errors == 1 { "" } else { "s" },
                    self.plans.display()
                ));
                Err(Failure::Plan(out))
            }
        }
    }

    /// Every secret the plans can resolve, plus the seed's secret variables.
    /// The redactor when no plan loaded: the seed's secret variables, and every value of the
    /// environment whose name says it is a secret (`…PASSWORD`, `…TOKEN`, `…SECRET`, `…KEY`,
    /// `…WEBHOOK`).
    pub fn env_redactor(&self) -> Redactor {
        let mut secrets: Vec<String> = SECRET_VARS
            .iter()
            .filter_map(|v| self.env.get(v))
            .map(str::to_string)
            .collect();
        secrets.extend(self.env.secret_looking());
        Redactor::new(secrets)
    }

    /// The plans, or, when they do not load, the `ops-run/plans` check that says why (the
    /// rendered diagnostics beside it).
    pub fn load_or_check(&self) -> Result<(Loaded, Compiled), PlansBroken> {
        match self.load() {
            Ok(x) => Ok(x),
            Err(Failure::Plan(rendered)) => {
                let check = crate::health::plans_check(Some(&plan_problems(&rendered)), 0);
                Err(Box::new((Failure::Plan(rendered), Some(check))))
            }
            Err(other) => Err(Box::new((other, None))),
        }
    }

    pub fn redactor(&self, compiled: &Compiled) -> Redactor {
        let mut secrets: Vec<String> = Vec::new();
        for p in &compiled.plans {
            for s in secret_values(&p.decl) {
                if let Some(v) = crate::plan::settings::secret_of(&self.env, s) {
                    // An identity file's secret keys on their own, wherever they are quoted.
                    secrets.extend(crate::artifact::seal::secret_lines(&v).map(str::to_string));
                    secrets.push(v);
                }
            }
        }
        secrets.extend(
            SECRET_VARS
                .iter()
                .filter_map(|v| self.env.get(v))
                .map(str::to_string),
        );
        // A repository URL may carry a password (`rest:https://user:PASSWORD@host/`).
        let repositories = compiled.steps.iter().flat_map(|s| match &s.decl.kind {
            crate::plan::model::StepKind::Snapshot(snap) => snap
                .repository
                .iter()
                .chain(&snap.more_repositories)
                .collect::<Vec<_>>(),
            crate::plan::model::StepKind::Copy(c) => c.repository.iter().collect(),
            _ => Vec::new(),
        });
        for r in repositories
            .filter_map(|r| self.env.resolve(&r.source).ok())
            .chain(self.env.get("RESTIC_REPO").map(str::to_string))
        {
            secrets.extend(url_password_forms(&r));
        }
        Redactor::new(secrets)
    }

    /// The store for a command that only reads; `None` before the first run.
    pub fn open_reader(&self) -> Result<Option<Store>, Failure> {
        Ok(Store::open_reader(
            &self.state.value,
            &stamp(self.clock.now()),
        )?)
    }

    pub fn open_store(&self) -> Result<Store, Failure> {
        Ok(Store::open(&self.state.value, &stamp(self.clock.now()))?)
    }
}

#[cfg(test)]
mod tests {
    use super::url_password;

    #[test]
    fn passwords_inside_repository_urls() {
        assert_eq!(
            url_password("rest:https://backup:s3cret@host:8000/repo").as_deref(),
            Some("s3cret")
        );
        for pw in ["Pw@Secret", "p:w", "p/w@x", "p%40w"] {
            let url = format!("rest:http://user:{pw}@host:8000/repo");
            assert_eq!(url_password(&url).as_deref(), Some(pw), "{url}");
        }
        assert_eq!(
            super::url_password_forms("rest:http://u:p%40w@host/"),
            ["p%40w", "p@w"]
        );
        assert_eq!(url_password("s3:https://host/bucket"), None);
        assert_eq!(url_password("/srv/restic"), None);
        assert_eq!(url_password("sftp://user@host//repo"), None);
    }
}
