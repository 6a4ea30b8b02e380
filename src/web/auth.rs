//! Tokens and permissions: `ops.view`, `ops.execute`, `ops.release` (`*` for all). A token is
//! presented as `Authorization: Bearer SECRET` or HTTP Basic with the secret as the password;
//! secrets are compared in constant time and never shown.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

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
    /// A per-process random key for the page's anti-forgery field.
    key: [u8; 32],
    /// Whether that key could be made (forms are refused without it).
    forms: bool,
}

/// Equal in time whatever the inputs (for equal lengths; a length difference is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Basic credentials: standard base64 (padding optional, as some clients omit it).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let s = s.trim().trim_end_matches('=');
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s)
        .ok()
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
        // From the operating system's generator: the form key must not be guessable.
        let mut key = [0u8; 32];
        if let Err(e) = getrandom::fill(&mut key) {
            eprintln!("serve: no random key for forms ({e}): the page's actions are off");
            return Tokens {
                tokens,
                key,
                forms: false,
            };
        }
        Tokens {
            tokens,
            key,
            forms: true,
        }
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

    /// The anti-forgery value the page puts in its forms for `token`: an HMAC-SHA-256 of the
    /// token under the per-process key. `None` when there is no key (forms are then refused).
    pub fn form_key(&self, token: &Token) -> Option<String> {
        if !self.forms {
            return None;
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).ok()?;
        mac.update(token.name.as_bytes());
        mac.update(&[0]);
        mac.update(token.secret.as_bytes());
        Some(crate::artifact::sha::hex(&mac.finalize().into_bytes())[..32].to_string())
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
                Some(crate::plan::model::ValueSource::Credential(c)) => format!("credential {c}"),
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
            key: [7; 32],
            forms: true,
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
        // Unpadded, as some clients send it.
        assert!(t.authenticate(Some("Basic YW55OnMzY3JldA")).is_some());
        // The form key: stable for a token, different for another key, none without a key.
        let tok = &t.tokens[0];
        let k = t.form_key(tok).unwrap();
        assert_eq!(k.len(), 32);
        assert_eq!(t.form_key(tok), Some(k.clone()));
        let other = Tokens {
            key: [8; 32],
            ..t.clone()
        };
        assert_ne!(other.form_key(tok), Some(k));
        let off = Tokens {
            forms: false,
            ..t.clone()
        };
        assert_eq!(off.form_key(tok), None);
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
