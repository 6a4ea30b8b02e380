//! Tokens and permissions: `ops.view`, `ops.execute`, `ops.release` (`*` for all). A token is
//! presented as `Authorization: Bearer SECRET` or HTTP Basic with the secret as the password;
//! secrets are compared in constant time and never shown.

use sha2::{Digest, Sha256};

use crate::app::App;
use crate::plan::compile::Compiled;

pub const PERMISSIONS: [(&str, &str); 4] = [
    (
        "ops.view",
        "read the status page, /api/status, /api/activities and /metrics",
    ),
    (
        "ops.execute",
        "run dump, snapshot, verify, report and command steps (POST /api/actions/STEP, the page's buttons); includes ops.view",
    ),
    ("ops.release", "run git-tag steps; includes ops.view"),
    ("*", "all of the above"),
];

#[derive(Clone, Debug)]
pub struct Token {
    /// `plan/name`.
    pub name: String,
    pub secret: String,
    pub allow: Vec<String>,
}

impl Token {
    pub fn grants(&self, permission: &str) -> bool {
        let has = |p: &str| self.allow.iter().any(|a| a == p || a == "*");
        match permission {
            // Acting on a backup includes seeing it.
            "ops.view" => has("ops.view") || has("ops.execute") || has("ops.release"),
            p => has(p),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Tokens {
    pub tokens: Vec<Token>,
    /// A per-process key for the page's anti-forgery field.
    key: [u8; 32],
}

/// Equal in time whatever the inputs (for equal lengths; a length difference is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0);
    for c in s.trim().bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Some(out)
}

impl Tokens {
    /// Every token of every plan's `serve` block, with its secret resolved; a token whose
    /// secret cannot be read is left out (it could authenticate nobody) with a warning.
    pub fn load(app: &App, compiled: &Compiled) -> Tokens {
        let mut tokens = Vec::new();
        for plan in &compiled.plans {
            let Some(serve) = &plan.decl.serve else {
                continue;
            };
            for t in &serve.tokens {
                let name = format!("{}/{}", plan.decl.name.value, t.name.value);
                let secret = t.secret.as_ref().map(|s| app.env.resolve(&s.source));
                match secret {
                    Some(Ok(s)) if !s.is_empty() => tokens.push(Token {
                        name,
                        secret: s,
                        allow: t.allow.iter().map(|a| a.value.clone()).collect(),
                    }),
                    Some(Err(e)) => eprintln!("serve: token {name} is off: {e}"),
                    _ => eprintln!("serve: token {name} is off: it has no secret"),
                }
            }
        }
        let seed = std::collections::hash_map::RandomState::new();
        let mut key = [0u8; 32];
        for (i, chunk) in key.chunks_mut(8).enumerate() {
            use std::hash::{BuildHasher, Hasher};
            let mut h = seed.build_hasher();
            h.write_usize(i);
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
        Tokens { tokens, key }
    }

    pub fn configured(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The token an `Authorization` header presents, if it is one of ours.
    pub fn authenticate(&self, header: Option<&str>) -> Option<&Token> {
        let header = header?.trim();
        let secret: String = if let Some(b) = header.strip_prefix("Bearer ") {
            b.trim().to_string()
        } else if let Some(b) = header.strip_prefix("Basic ") {
            let decoded = String::from_utf8(base64_decode(b)?).ok()?;
            decoded.split_once(':').map(|(_, p)| p.to_string())?
        } else {
            return None;
        };
        // Compare with every token, so timing does not tell which one nearly matched.
        let mut found = None;
        for t in &self.tokens {
            if constant_time_eq(t.secret.as_bytes(), secret.as_bytes()) && found.is_none() {
                found = Some(t);
            }
        }
        found
    }

    /// The anti-forgery value the page puts in its forms for `token`.
    pub fn form_key(&self, token: &Token) -> String {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(token.name.as_bytes());
        h.update(token.secret.as_bytes());
        crate::artifact::sha::hex(&h.finalize())[..32].to_string()
    }
}

/// `ops-run permissions`: the permission set and which tokens hold what (never their secrets).
pub fn print(compiled: &Compiled) {
    crate::outln!("PERMISSION   ALLOWS");
    for (p, what) in PERMISSIONS {
        crate::outln!("{p:<12} {what}");
    }
    let mut rows: Vec<[String; 4]> = Vec::new();
    for plan in &compiled.plans {
        let Some(serve) = &plan.decl.serve else {
            continue;
        };
        for t in &serve.tokens {
            let from = match t.secret.as_ref().map(|s| &s.source) {
                Some(crate::plan::model::ValueSource::Env(v)) => format!("env {v}"),
                Some(crate::plan::model::ValueSource::File(f)) => format!("file {f}"),
                Some(crate::plan::model::ValueSource::Literal(_)) => "written in the plan".into(),
                None => "none".into(),
            };
            rows.push([
                format!("{}/{}", plan.decl.name.value, t.name.value),
                plan.decl.name.value.clone(),
                t.allow
                    .iter()
                    .map(|a| a.value.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                from,
            ]);
        }
    }
    crate::outln!();
    if rows.is_empty() {
        crate::outln!("no tokens: `serve` is open read-only and no action is possible");
    } else {
        crate::out!(
            "{}",
            crate::commands::activities::format_table(
                &["TOKEN", "PLAN", "ALLOWS", "SECRET FROM"],
                &rows
            )
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_and_bearer() {
        let t = Tokens {
            tokens: vec![Token {
                name: "p/a".into(),
                secret: "s3cret".into(),
                allow: vec!["ops.view".into()],
            }],
            key: [0; 32],
        };
        assert_eq!(
            t.authenticate(Some("Bearer s3cret"))
                .map(|t| t.name.as_str()),
            Some("p/a")
        );
        // "any:s3cret"
        assert_eq!(
            t.authenticate(Some("Basic YW55OnMzY3JldA=="))
                .map(|t| t.name.as_str()),
            Some("p/a")
        );
        assert!(t.authenticate(Some("Bearer s3cre")).is_none());
        assert!(t.authenticate(Some("Basic !!!")).is_none());
        assert!(t.authenticate(None).is_none());
    }

    #[test]
    fn what_each_permission_grants() {
        let tok = |a: &str| Token {
            name: "x".into(),
            secret: "y".into(),
            allow: vec![a.into()],
        };
        assert!(tok("ops.execute").grants("ops.view"));
        assert!(!tok("ops.view").grants("ops.execute"));
        assert!(!tok("ops.execute").grants("ops.release"));
        assert!(tok("ops.release").grants("ops.view") && !tok("ops.release").grants("ops.execute"));
        assert!(tok("*").grants("ops.release") && tok("*").grants("ops.execute"));
    }
}
