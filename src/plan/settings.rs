//! Settings resolution: plan value < seed environment variable < command-line flag, with origins.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use crate::plan::model::{Sourced, ValueSource};
use crate::plan::source::{Sources, Span};

/// Why the environment or a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("cannot read env file {path}: {source}")]
    EnvFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The file could not be read as one (the reader's words name the path).
    #[error("env file: {0}")]
    EnvFileRead(String),
    #[error("{path}: {why}")]
    EnvFileSyntax {
        path: std::path::PathBuf,
        why: String,
    },
    #[error(transparent)]
    Now(#[from] crate::clock::BadNow),
    #[error("environment variable {0} is not set")]
    NotSet(String),
    #[error(
        "credential {0}: no $CREDENTIALS_DIRECTORY (systemd sets it for a unit with LoadCredential=)"
    )]
    NoCredentials(String),
    #[error("cannot read {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

/// The environment ops-run reads: the process environment over an optional `--env-file`.
#[derive(Clone, Debug, Default)]
pub struct Env {
    vars: HashMap<String, String>,
    /// The env file the variables were read from, if any.
    source: Option<std::path::PathBuf>,
}

impl Env {
    /// The process environment; a `--env-file` fills in variables the process does not set.
    pub fn load(env_file: Option<&Path>) -> Result<Env, EnvError> {
        let mut vars = HashMap::new();
        if let Some(path) = env_file {
            for (k, v) in read_dotenv(path)? {
                vars.insert(k, v);
            }
        }
        for (k, v) in std::env::vars_os() {
            if let (Ok(k), Ok(v)) = (k.into_string(), v.into_string()) {
                vars.insert(k, v);
            }
        }
        Ok(Env {
            vars,
            source: env_file.map(Path::to_path_buf),
        })
    }

    /// The env file the variables were read from (`--env-file` or the installed one).
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Env {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            source: None,
        }
    }

    /// The value when set and non-empty (the seed's rule: empty means unset).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The values of variables whose names say they hold a secret.
    pub fn secret_looking(&self) -> Vec<String> {
        self.vars
            .iter()
            .filter(|(k, v)| {
                v.len() >= 4
                    && [
                        "PASSWORD", "TOKEN", "SECRET", "_KEY", "WEBHOOK", "_PASS", "_PW",
                    ]
                    .iter()
                    .any(|w| k.to_ascii_uppercase().contains(w))
            })
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Sets a variable (the acting user's `HOME` after a switch).
    pub fn set(&mut self, key: &str, value: &str) {
        self.vars.insert(key.to_string(), value.to_string());
    }

    /// Whether the variable is set at all (an empty value counts: it can switch a feature off).
    pub fn is_set(&self, key: &str) -> bool {
        self.vars.contains_key(key)
    }

    /// Resolves a value source. Errors say which variable or file is missing.
    pub fn resolve(&self, source: &ValueSource) -> Result<String, EnvError> {
        match source {
            ValueSource::Literal(v) => Ok(v.clone()),
            ValueSource::Env(name) => self
                .get(name)
                .map(str::to_string)
                .ok_or_else(|| EnvError::NotSet(name.clone())),
            ValueSource::Credential(name) => {
                let dir = self
                    .get("CREDENTIALS_DIRECTORY")
                    .ok_or_else(|| EnvError::NoCredentials(name.clone()))?;
                let path = std::path::Path::new(dir).join(name);
                std::fs::read_to_string(&path)
                    .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                    .map_err(|source| EnvError::File {
                        path: path.display().to_string(),
                        source,
                    })
            }
            ValueSource::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|source| EnvError::File {
                    path: path.clone(),
                    source,
                }),
        }
    }
}

/// The largest env file ops-run reads: far more than any application's `.env`.
pub const MAX_ENV_BYTES: u64 = 1 << 20;

/// The variables of a dotenv file, in order (`--env-file`, an application's `.env` for
/// `init`): a regular file of at most `MAX_ENV_BYTES`, UTF-8.
pub fn read_dotenv(path: &Path) -> Result<Vec<(String, String)>, EnvError> {
    let syntax = |why: String| EnvError::EnvFileSyntax {
        path: path.to_path_buf(),
        why,
    };
    let bytes = crate::plan::source::read_limited(path, MAX_ENV_BYTES).map_err(|why| {
        // The reader names the path itself.
        EnvError::EnvFileRead(why)
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        syntax(format!("line {line}: not UTF-8 text"))
    })?;
    parse_dotenv(&text).map_err(syntax)
}

/// A dotenv file's `KEY=value` lines, as dotenvy reads them: `#` comments, `export `, single
/// quotes (literal), double quotes (escapes such as `\n`, values over several lines), and
/// `$VAR` / `${VAR}` expanded in unquoted and double-quoted values. An error names the line
/// and the variable, never the value (it may be a password, and errors reach cron mail).
fn parse_dotenv(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        let (k, v) = item.map_err(|e| match e {
            dotenvy::Error::LineParse(line, at) => {
                let number = text
                    .find(line.as_str())
                    .map_or(0, |i| text[..i].matches('\n').count() + 1);
                let name = line
                    .trim_start()
                    .trim_start_matches("export ")
                    .split('=')
                    .next()
                    .map(str::trim)
                    .filter(|n| crate::plan::decode::valid_env_name(n));
                let place = match number {
                    0 => "a line".to_string(),
                    n => format!("line {n}"),
                };
                match name {
                    Some(n) => format!(
                        "{place} ({n}=…): cannot be read (at character {}); check its quotes and escapes",
                        at + 1
                    ),
                    None => format!(
                        "{place}: not a `NAME=value` line (at character {})",
                        at + 1
                    ),
                }
            }
            dotenvy::Error::Io(e) => format!("cannot read: {e}"),
            dotenvy::Error::EnvVar(e) => format!("cannot read: {e}"),
            _ => "cannot be read as a dotenv file".to_string(),
        })?;
        if !crate::plan::decode::valid_env_name(&k) {
            return Err(format!("`{}` is not a variable name", k.escape_debug()));
        }
        out.push((k, v));
    }
    Ok(out)
}

/// Where a resolved setting came from, so `plan show` can say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Plan(Span),
    Env(String),
    Flag(String),
    Default,
}

impl Origin {
    pub fn describe(&self, sources: &Sources) -> String {
        match self {
            Origin::Plan(span) => {
                let loc = sources.locate(*span);
                format!("plan {}:{}", loc.path.display(), loc.line)
            }
            Origin::Env(var) => format!("env {var}"),
            Origin::Flag(flag) => format!("flag {flag}"),
            Origin::Default => "default".into(),
        }
    }

    /// The short kind for JSON: `plan`, `env`, `flag`, `default`.
    pub fn kind(&self) -> &'static str {
        match self {
            Origin::Plan(_) => "plan",
            Origin::Env(_) => "env",
            Origin::Flag(_) => "flag",
            Origin::Default => "default",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Setting<T> {
    pub value: T,
    pub origin: Origin,
}

impl<T> Setting<T> {
    pub fn new(value: T, origin: Origin) -> Self {
        Setting { value, origin }
    }
}

impl<T: fmt::Display> fmt::Display for Setting<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

/// A sourced value that ops-run treats as a secret when it resolves.
pub fn secret_of(env: &Env, sourced: &Sourced) -> Option<String> {
    env.resolve(&sourced.source).ok().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_lines() {
        let parsed = parse_dotenv(
            "# comment\nexport A=1\nB=\"two words\"\nC='x=y'\nD=plain # trailing\n\nE=\n\
             KEY=\"-----BEGIN-----\nline two\n-----END-----\"\nF=\"say \\\"hi\\\"\"\nG='pa$$word'\n",
        )
        .unwrap();
        assert_eq!(
            parsed,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x=y".into()),
                ("D".into(), "plain".into()),
                ("E".into(), "".into()),
                (
                    "KEY".into(),
                    "-----BEGIN-----\nline two\n-----END-----".into()
                ),
                ("F".into(), "say \"hi\"".into()),
                ("G".into(), "pa$$word".into()),
            ]
        );
        assert!(parse_dotenv("no equals sign").is_err());
    }

    #[test]
    fn empty_counts_as_unset_for_values() {
        let env = Env::from_pairs([("A", ""), ("B", "x")]);
        assert_eq!(env.get("A"), None);
        assert!(env.is_set("A"));
        assert_eq!(env.get("B"), Some("x"));
    }
}
