//! The contextual help registry (`templates/help.toml`, built into the binary): keys with a
//! title, a body and an optional link, used by `{{help "key"}}` in templates and `ops-run help`.

use std::collections::BTreeMap;

use serde::Deserialize;

pub const REGISTRY: &str = include_str!("../templates/help.toml");

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub title: String,
    pub body: String,
    pub link: Option<String>,
}

/// The built-in help registry does not parse (a build that shipped a broken file).
#[derive(Clone, Debug, thiserror::Error)]
#[error("templates/help.toml: {0}")]
pub struct HelpError(String);

/// The registry, parsed once per process.
pub fn registry() -> Result<BTreeMap<String, Entry>, HelpError> {
    static PARSED: std::sync::OnceLock<Result<BTreeMap<String, Entry>, HelpError>> =
        std::sync::OnceLock::new();
    PARSED
        .get_or_init(|| toml::from_str(REGISTRY).map_err(|e| HelpError(e.to_string())))
        .clone()
}

/// `ops-run help [KEY]`.
/// The usage of a subcommand (`plan`, `status`, …), or `None` for another word.
fn subcommand_help(name: &str) -> Option<String> {
    use clap::CommandFactory;
    let mut cli = crate::cli::Cli::command();
    let sub = cli.find_subcommand_mut(name)?;
    let mut sub = sub.clone().bin_name(format!("ops-run {name}"));
    Some(sub.render_help().to_string())
}

pub fn run(key: Option<&str>) -> Result<(), crate::error::Failure> {
    use crate::error::Failure;
    let reg = registry().map_err(|e| Failure::Runtime(e.to_string()))?;
    match key {
        None => {
            let width = reg.keys().map(String::len).max().unwrap_or(0);
            for (k, e) in &reg {
                crate::outln!("{k:<width$}  {}", e.title);
            }
            Ok(())
        }
        // `ops-run help plan`: a subcommand's usage, as `ops-run plan --help` prints it.
        Some(k) if !reg.contains_key(k) && subcommand_help(k).is_some() => {
            crate::out!("{}", subcommand_help(k).unwrap_or_default());
            Ok(())
        }
        Some(k) => {
            let e = reg.get(k).ok_or_else(|| {
                let hint = crate::plan::diagnostic::did_you_mean(k, reg.keys().map(String::as_str))
                    .map(|m| format!("; did you mean `{m}`?"))
                    .unwrap_or_default();
                Failure::Usage(format!("no help for `{k}`{hint}"))
            })?;
            crate::outln!("{}\n\n{}", e.title, e.body);
            if let Some(link) = &e.link {
                crate::outln!("\n{link}");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_has_a_title_and_a_body() {
        let reg = registry().unwrap();
        assert!(reg.len() >= 8);
        for (k, e) in reg {
            assert!(!e.title.trim().is_empty(), "{k} has no title");
            assert!(!e.body.trim().is_empty(), "{k} has no body");
        }
    }
}
