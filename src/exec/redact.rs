//! Redaction: every secret value a plan resolves is replaced by `***` in anything ops-run writes.

#[derive(Clone, Debug, Default)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is replaced whole.
    secrets: Vec<String>,
}

pub const MASK: &str = "***";

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Redactor {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        // Multi-line secrets (keys, files) are also matched line by line.
        let lines: Vec<String> = secrets
            .iter()
            .filter(|s| s.contains('\n'))
            .flat_map(|s| {
                s.lines()
                    .map(str::trim)
                    .filter(|l| l.len() >= 8)
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        secrets.extend(lines);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }

    /// Redacts every string (and key) of a JSON value. Walking the tree, not the JSON text, is
    /// what makes it total: a secret holding `"` or `\` is escaped in the text and would slip
    /// past a textual replacement, and a replacement inside an escape could break the JSON.
    pub fn redact_json(&self, v: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::String(s) => Value::String(self.redact(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.redact_json(x)).collect()),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| (self.redact(k), self.redact_json(x)))
                    .collect(),
            ),
            Value::Null | Value::Bool(_) | Value::Number(_) => v.clone(),
        }
    }

    /// The length of the longest secret: a tail cut may hold at most that much of a split one.
    pub fn longest(&self) -> usize {
        self.secrets.first().map_or(0, String::len)
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_redacted_value_by_value_even_with_quotes_and_backslashes() {
        let secret = r#"pa"ss\word{"#.to_string();
        let r = Redactor::new([secret.clone()]);
        let v = serde_json::json!({
            "detail": format!("login with {secret} failed"),
            "nested": [{ "log": secret.clone() }, 3, null],
            secret.clone(): true,
        });
        // The textual way misses it: in JSON text the quote and backslash are escaped.
        assert!(r.redact(&v.to_string()).contains(r#"pa\"ss"#));
        let out = r.redact_json(&v).to_string();
        assert!(
            !out.contains("pa\\\"ss") && !out.contains("ss\\\\word"),
            "{out}"
        );
        assert_eq!(r.redact_json(&v)["detail"], "login with *** failed");
        assert_eq!(r.redact_json(&v)["nested"][0]["log"], "***");
        assert_eq!(r.redact_json(&v)["***"], true);
        assert_eq!(r.redact_json(&v)["nested"][1], 3);
    }

    #[test]
    fn replaces_every_occurrence_longest_first() {
        let r = Redactor::new([
            "hunter2".to_string(),
            "hunter2-extended".to_string(),
            String::new(),
        ]);
        assert_eq!(r.redact("a hunter2 b hunter2-extended c"), "a *** b *** c");
        assert_eq!(r.redact("nothing here"), "nothing here");
    }
}
