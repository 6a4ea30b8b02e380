//! Rendering Markdown with handlebars: Markdown escaping (not HTML), strict mode, and the
//! `{{help "key"}}` helper, which leaves a footnote mark and appends the registry's text.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, Output, RenderContext, RenderErrorReason,
};
use serde_json::Value;

use crate::help::Entry;

/// The built-in report template.
pub const BACKUP_REPORT: &str = include_str!("../../templates/backup-report.md.hbs");

/// Backslash-escapes what Markdown would read as formatting or a table cell break.
pub fn markdown_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#'
        ) {
            out.push('\\');
        }
        if c == '\n' {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

struct HelpHelper {
    registry: Arc<BTreeMap<String, Entry>>,
    used: Arc<Mutex<Vec<String>>>,
}

impl HelperDef for HelpHelper {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let key = h
            .param(0)
            .and_then(|p| p.value().as_str())
            .ok_or_else(|| RenderErrorReason::Other("help needs a key: {{help \"key\"}}".into()))?;
        if !self.registry.contains_key(key) {
            return Err(RenderErrorReason::Other(format!(
                "unknown help key `{key}` (see templates/help.toml)"
            ))
            .into());
        }
        if let Ok(mut used) = self.used.lock()
            && !used.iter().any(|k| k == key)
        {
            used.push(key.to_string());
        }
        out.write(&format!("[^{key}]"))?;
        Ok(())
    }
}

/// Renders `template` in strict mode; the help footnotes follow the text.
pub fn render(
    template: &str,
    context: &Value,
    registry: &BTreeMap<String, Entry>,
) -> Result<String, super::ReportError> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(markdown_escape);
    let used = Arc::new(Mutex::new(Vec::new()));
    hb.register_helper(
        "help",
        Box::new(HelpHelper {
            registry: Arc::new(registry.clone()),
            used: Arc::clone(&used),
        }),
    );
    let mut text = hb.render_template(template, context).map_err(|e| {
        let at = match (e.line_no, e.column_no) {
            (Some(l), Some(c)) => format!("line {l}, column {c}: "),
            (Some(l), None) => format!("line {l}: "),
            _ => String::new(),
        };
        super::ReportError::Render(format!("{at}{}", e.reason()))
    })?;
    let used = used.lock().map(|u| u.clone()).unwrap_or_default();
    if !used.is_empty() {
        text.push_str("\n---\n\n");
        for key in used {
            if let Some(e) = registry.get(&key) {
                let link = e
                    .link
                    .as_ref()
                    .map(|l| format!(" <{l}>"))
                    .unwrap_or_default();
                text.push_str(&format!("[^{key}]: **{}**: {}{link}\n", e.title, e.body));
            }
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn registry() -> BTreeMap<String, Entry> {
        crate::help::registry().unwrap()
    }

    #[test]
    fn escapes_markdown_not_html() {
        let out = render(
            "{{x}}",
            &json!({ "x": "a|b *c* <script> ops_verify" }),
            &registry(),
        )
        .unwrap();
        assert_eq!(out, "a\\|b \\*c\\* \\<script\\> ops\\_verify");
    }

    #[test]
    fn strict_mode_names_the_line_of_an_unknown_variable() {
        let err = render("line one\n{{plna}}\n", &json!({ "plan": "x" }), &registry())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("line 2"), "{err}");
        assert!(err.contains("plna"), "{err}");
    }

    #[test]
    fn help_leaves_a_footnote_and_unknown_keys_fail() {
        let out = render("Overall{{help \"thresholds\"}}", &json!({}), &registry()).unwrap();
        assert!(
            out.starts_with("Overall[^thresholds]\n---\n\n[^thresholds]: **Thresholds**: "),
            "{out}"
        );
        let err = render("{{help \"nope\"}}", &json!({}), &registry()).unwrap_err();
        assert!(err.to_string().contains("unknown help key `nope`"), "{err}");
    }
}
