//! The `git-tag` step: a release tag on a bare clone kept beside the application (so the
//! application's own checkout and credentials are never touched). The clone is created from
//! `remote` when missing and fetched on every run; the annotated tag carries the backup
//! evidence; an existing tag is never moved (a failure, not a silent skip); the push uses the
//! deploy key through `GIT_SSH_COMMAND`.

use super::Settings;
use crate::graph::EdgeKind;
use crate::plan::compile::Compiling;
use crate::plan::decode::Decoder;
use crate::plan::diagnostic::Diagnostic;
use crate::plan::model::Spanned;
use crate::plan::validate::{self, Scope};
use kdl::KdlNode;
use std::path::Path;

use serde_json::json;

use super::{Context, Outcome, Status, StepError};
use crate::artifact::layout::{self, Area};
use crate::artifact::sha;
use crate::engines::tool;
use crate::exec::{self, ProcessSpec};
use crate::plan::model::{GitTag, StepKind};

/// The settings of a `git-tag` block (beside the common ones).
pub const SETTINGS: Settings = Settings {
    keys: &["repository", "remote", "deploy-key", "name", "ref"],
    repeatable: &[],
};

pub fn decode(g: &mut GitTag, key: &str, node: &KdlNode, dec: &mut Decoder) {
    match key {
        "repository" => g.repository = dec.string(node),
        "remote" => g.remote = dec.string(node),
        "deploy-key" => g.deploy_key = dec.string(node),
        "name" => g.name = dec.string(node),
        "ref" => g.git_ref = dec.string(node),
        _ => {}
    }
}

/// A `git-tag`'s compiled form: its name pattern and repository, and a requirement on every
/// other step of the plan (a release is tagged only when all of them succeeded).
pub fn compile(g: &GitTag, c: &mut Compiling) {
    if let Some(n) = &g.name {
        c.plan_setting("name", n.value.clone(), n.span);
    }
    if let Some(r) = &g.repository {
        c.plan_setting("repository", r.value.clone(), r.span);
    }
    c.after_all(|k| !matches!(k, StepKind::GitTag(_)), EdgeKind::Requires);
}

/// Checks a `git-tag` block on its own (references to its plan's databases and steps).
pub fn validate(g: &GitTag, name: &Spanned<String>, _: &Scope, diags: &mut Vec<Diagnostic>) {
    if let Some(key) = &g.deploy_key {
        // Files it can check now: ssh fails later, in the middle of a release, otherwise.
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(&key.value) {
            Ok(m) if !m.is_file() => diags.push(
                Diagnostic::warning(key.span, format!("{} is not a file", key.value), "not a key file")
                    .with_help("name the private key file ssh should use"),
            ),
            Ok(m) if m.permissions().mode() & 0o077 != 0 => diags.push(
                Diagnostic::warning(
                    key.span,
                    format!("{} can be read by other users (mode {:o}): ssh refuses such a key", key.value, m.permissions().mode() & 0o777),
                    "key readable by others",
                )
                .with_help(format!("chmod 600 {}", key.value)),
            ),
            Ok(_) => {}
            Err(e) => diags.push(
                Diagnostic::warning(
                    key.span,
                    if e.kind() == std::io::ErrorKind::NotFound {
                        format!("{} does not exist", key.value)
                    } else {
                        format!("{} cannot be read ({})", key.value, e.kind())
                    },
                    "deploy key",
                )
                    .with_help("create the key (ssh-keygen -t ed25519 -f PATH) and add its .pub to the remote as a deploy key"),
            ),
        }
    }
    if g.repository.is_none() {
        diags.push(
            Diagnostic::error(
                name.span,
                format!("git-tag `{}` needs `repository`", name.value),
                "repository missing",
            )
            .with_help("add `repository \"/srv/git/app.git\"`: the bare clone ops-run keeps"),
        );
    }
    match &g.name {
        None => diags.push(
            Diagnostic::error(
                name.span,
                format!("git-tag `{}` needs `name`", name.value),
                "tag name missing",
            )
            .with_help("add `name \"backup-{date}\"`"),
        ),
        Some(pattern) => {
            if let Err(why) = validate::check_tag_pattern(&pattern.value) {
                diags.push(
                    Diagnostic::error(
                        pattern.span,
                        format!("invalid tag pattern: {why}"),
                        "invalid pattern",
                    )
                    .with_help("placeholders are {date}, {time}, {plan} and {seq}"),
                );
            }
        }
    }
}

fn git(ctx: &Context, g: &GitTag, args: &[&str]) -> ProcessSpec {
    let mut spec = ProcessSpec::new(
        tool(&ctx.plan.tools, "git", "git"),
        args.iter().map(|a| a.to_string()),
    );
    if let Some(key) = &g.deploy_key {
        spec.env.push((
            "GIT_SSH_COMMAND".into(),
            format!(
                "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes",
                exec::shell_quote(&key.value)
            ),
        ));
    }
    // Never ask on a terminal: a cron job has none.
    spec.env.push(("GIT_TERMINAL_PROMPT".into(), "0".into()));
    spec.timeout = Some(ctx.step.timeout.value);
    spec
}

/// `{date}` `{time}` `{plan}` in the plan's time zone; `{seq}` is filled by the caller.
pub fn tag_name(pattern: &str, ctx: &Context, seq: u32) -> String {
    let now = ctx.clock.now().with_timezone(&ctx.plan.timezone.value);
    pattern
        .replace("{date}", &now.format("%Y%m%d").to_string())
        .replace("{time}", &now.format("%H%M").to_string())
        .replace("{plan}", &ctx.plan.decl.name.value)
        .replace("{seq}", &seq.to_string())
}

fn run(ctx: &Context, spec: &ProcessSpec) -> Result<String, StepError> {
    let r = exec::run(spec, ctx.redactor);
    if r.success() {
        Ok(r.tail)
    } else {
        Err(format!(
            "`git {}` failed ({:?}):\n{}",
            spec.args.join(" "),
            r.exit,
            r.tail.trim()
        )
        .into())
    }
}

/// One evidence line per step of the plan whose kind `word` names (`dump: …`, or `dump NAME:
/// …` when there are several); `dump: none` when the plan has none. `newest` reads a step's
/// newest evidence, `None` when it has none.
fn per_step(
    ctx: &Context,
    word: &str,
    of_kind: impl Fn(&StepKind) -> bool,
    newest: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    let steps: Vec<&str> = ctx
        .plan
        .steps_where(of_kind)
        .map(|s| s.name.value.as_str())
        .collect();
    if steps.is_empty() {
        return vec![format!("{word}: {}", none_for(word))];
    }
    steps
        .iter()
        .map(|step| {
            let label = if steps.len() > 1 {
                format!("{word} {step}")
            } else {
                word.to_string()
            };
            let found = newest(step);
            format!("{label}: {}", found.as_deref().unwrap_or(none_for(word)))
        })
        .collect()
}

fn none_for(word: &str) -> &'static str {
    if word == "verify" { "never" } else { "none" }
}

/// The evidence the tag message carries: the newest good dump of each dump step and its
/// sha256, the newest restore test of each verify step, the newest snapshot of each snapshot
/// step.
fn evidence(ctx: &Context) -> String {
    let tz = ctx.plan.timezone.value;
    let store = ctx
        .state
        .and_then(|p| crate::store::Store::open_read_only(p).ok().flatten());
    let mut lines = per_step(
        ctx,
        "dump",
        |k| matches!(k, StepKind::Dump(_)),
        |step| {
            let d = layout::list_dumps(&ctx.plan.dir(step, Area::Dumps), tz)
                .into_iter()
                .find(layout::has_sidecar)?;
            let sum = std::fs::read_to_string(layout::sidecar_path(&d.path))
                .ok()
                .and_then(|t| sha::parse_sidecar(&t, &d.name))
                .unwrap_or_default();
            Some(format!("{} sha256 {sum}", d.name))
        },
    );
    lines.extend(per_step(
        ctx,
        "verify",
        |k| matches!(k, StepKind::Verify(_)),
        |step| {
            let (_, last) = store
                .as_ref()?
                .last_runs(
                    &ctx.plan.decl.name.value,
                    step,
                    crate::activity::ActivityType::VerifyRestore,
                )
                .ok()?;
            let f = last?;
            let m = crate::store::meta::VerifyMeta::read(&f.meta);
            let dump = m.dump_name();
            Some(format!(
                "{} at {} (dump {dump}, {} tables)",
                f.status,
                f.at,
                m.verify_table_count
                    .map_or_else(|| "-".into(), |n| n.to_string())
            ))
        },
    ));
    lines.extend(per_step(
        ctx,
        "snapshot",
        |k| matches!(k, StepKind::Snapshot(_)),
        |step| {
            let m = layout::list_stamped(
                &ctx.plan.dir(step, Area::Snapshots),
                "snapshot-",
                ".txt",
                tz,
            )
            .into_iter()
            .next()?;
            let text = std::fs::read_to_string(&m.path).unwrap_or_default();
            Some(
                text.lines()
                    .find_map(|l| l.strip_prefix("id: "))
                    .unwrap_or_default()
                    .to_string(),
            )
        },
    ));
    lines.join("\n")
}

pub fn preview(ctx: &Context, g: &GitTag) -> Result<String, StepError> {
    let repo = g
        .repository
        .as_ref()
        .map(|r| r.value.clone())
        .unwrap_or_default();
    let name = tag_name(g.name.as_ref().map_or("", |n| n.value.as_str()), ctx, 1);
    Ok(format!(
        "{} (then tag {name}, push to {})",
        git(
            ctx,
            g,
            &["--git-dir", &repo, "fetch", "--prune", "--tags", "origin"]
        )
        .display(ctx.redactor),
        g.remote.as_ref().map_or("origin", |r| r.value.as_str())
    ))
}

pub fn execute(ctx: &Context, g: &GitTag) -> Outcome {
    match tag(ctx, g) {
        Ok((name, commit, remote)) => Outcome {
            status: Status::Success,
            meta: json!({ "tag": name, "commit": commit, "remote": remote }),
            log_excerpt: String::new(),
            summary: format!("tagged {commit:.12} as {name} and pushed it"),
            extra: Vec::new(),
            tolerated: false,
        },
        Err(e) => Outcome::failed(ctx.redactor.redact(&e.to_string())),
    }
}

fn tag(ctx: &Context, g: &GitTag) -> Result<(String, String, String), StepError> {
    let repo = g
        .repository
        .as_ref()
        .map(|r| r.value.clone())
        .ok_or("no repository")?;
    let pattern = g
        .name
        .as_ref()
        .map(|n| n.value.clone())
        .ok_or("no tag name")?;
    let remote = g.remote.as_ref().map(|r| r.value.clone());
    if !Path::new(&repo).join("HEAD").exists() {
        let remote = remote.as_deref().ok_or_else(|| {
            format!("{repo} does not exist and the plan names no remote to clone")
        })?;
        run(
            ctx,
            &git(ctx, g, &["clone", "--bare", "--quiet", remote, &repo]),
        )?;
    } else {
        run(
            ctx,
            &git(
                ctx,
                g,
                &[
                    "--git-dir",
                    &repo,
                    "fetch",
                    "--quiet",
                    "--prune",
                    "--tags",
                    "origin",
                    "+refs/heads/*:refs/heads/*",
                ],
            ),
        )?;
    }
    let target = g
        .git_ref
        .as_ref()
        .map_or("HEAD".to_string(), |r| r.value.clone());
    let commit = run(
        ctx,
        &git(
            ctx,
            g,
            &[
                "--git-dir",
                &repo,
                "rev-parse",
                "--verify",
                &format!("{target}^{{commit}}"),
            ],
        ),
    )?
    .trim()
    .to_string();
    // {seq}: the first free counter of the day; without it, the one name.
    let exists = |name: &str| {
        exec::run(
            &git(
                ctx,
                g,
                &[
                    "--git-dir",
                    &repo,
                    "rev-parse",
                    "-q",
                    "--verify",
                    &format!("refs/tags/{name}"),
                ],
            ),
            ctx.redactor,
        )
        .success()
    };
    let name = if pattern.contains("{seq}") {
        (1..10_000)
            .map(|n| tag_name(&pattern, ctx, n))
            .find(|n| !exists(n))
            .ok_or("no free {seq}")?
    } else {
        let name = tag_name(&pattern, ctx, 1);
        if exists(&name) {
            return Err(format!(
                "the tag {name} exists already: tags are never moved or overwritten (add {{seq}} or {{time}} to the pattern to tag more than once a day)"
            ).into());
        }
        name
    };
    run(
        ctx,
        &git(ctx, g, &["check-ref-format", &format!("refs/tags/{name}")]),
    )
    .map_err(|_| format!("`{name}` is not a valid tag name"))?;
    let message = format!("ops-run backup release {name}\n\n{}\n", evidence(ctx));
    run(
        ctx,
        &git(
            ctx,
            g,
            &[
                "--git-dir",
                &repo,
                "-c",
                "user.name=ops-run",
                "-c",
                "user.email=ops-run@localhost",
                "tag",
                "-a",
                &name,
                &commit,
                "-m",
                &message,
            ],
        ),
    )?;
    let push_to = remote.clone().unwrap_or_else(|| "origin".into());
    if let Err(e) = run(
        ctx,
        &git(
            ctx,
            g,
            &[
                "--git-dir",
                &repo,
                "push",
                "--quiet",
                &push_to,
                &format!("refs/tags/{name}"),
            ],
        ),
    ) {
        // A tag that did not reach the remote is not a release: take it back locally.
        let _ = exec::run(
            &git(ctx, g, &["--git-dir", &repo, "tag", "-d", &name]),
            ctx.redactor,
        );
        return Err(e);
    }
    Ok((name, commit, push_to))
}
