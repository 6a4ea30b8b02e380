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
