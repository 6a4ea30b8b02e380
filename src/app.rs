//! What every command shares: the environment, the clock, plan loading, the store, redaction.

use std::path::PathBuf;

use crate::cli::Cli;
use crate::clock::{Clock, stamp};
use crate::error::Failure;
use crate::exec::redact::Redactor;
use crate::plan::compile::Compiled;
use crate::plan::validate::secret_values;
use crate::plan::{self, Loaded};
use crate::settings::{Env, Origin, Setting};
use crate::store::{self, Store};

pub struct App {
    pub plans: PathBuf,
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

/// This machine's name (the kernel's), as restic and a browser's `Host` know it.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// The password in `scheme://user:password@host…`, if any. The user information ends at the
/// *last* `@` (a password may hold `@`, `:`, `/` or `%`; one `@` too many in a path only
/// widens what is hidden), and the password starts after the user's first `:`.
pub fn url_password(url: &str) -> Option<String> {
    let rest = &url[url.find("://")? + 3..];
    let userinfo = &rest[..rest.rfind('@')?];
    let (_, pw) = userinfo.split_once(':')?;
    (!pw.is_empty()).then(|| pw.to_string())
}

/// The password of a URL as written and, when it is percent-encoded, as the tool decodes it:
/// both are secrets.
pub fn url_password_forms(url: &str) -> Vec<String> {
    let Some(pw) = url_password(url) else {
        return Vec::new();
    };
    let decoded = percent_encoding::percent_decode_str(&pw)
        .decode_utf8_lossy()
        .into_owned();
    if decoded != pw && !decoded.is_empty() {
        vec![pw, decoded]
    } else {
        vec![pw]
    }
}

impl App {
    pub fn new(cli: &Cli) -> Result<App, Failure> {
        let env = Env::load(cli.env_file.as_deref())?;
        let clock = Clock::from_env(env.get("OPS_NOW"))?;
        let state = match (&cli.state, env.get("OPS_STATE")) {
            (Some(p), _) => Setting::new(p.clone(), Origin::Flag("--state".into())),
            (None, Some(p)) => Setting::new(PathBuf::from(p), Origin::Env("OPS_STATE".into())),
            (None, None) => Setting::new(PathBuf::from(store::DEFAULT_PATH), Origin::Default),
        };
        crate::engines::secret_file::beside(&state.value);
        Ok(App {
            plans: cli.plans.clone(),
            env,
            clock,
            state,
        })
    }

    /// Loads plans; errors are rendered into `Failure::Plan` (exit 2, nothing runs).
    pub fn load(&self) -> Result<(Loaded, Compiled), Failure> {
        let mut loaded = plan::load(&self.plans, &self.env)?;
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
    pub fn redactor(&self, compiled: &Compiled) -> Redactor {
        let mut secrets: Vec<String> = Vec::new();
        for p in &compiled.plans {
            for s in secret_values(&p.decl) {
                if let Some(v) = crate::settings::secret_of(&self.env, s) {
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
