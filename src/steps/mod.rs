//! Step kinds: each file builds its command as a plain value and turns a run into an outcome.

pub mod base_backup;
pub mod check;
pub mod cluster;
pub mod command;
pub mod copy;
pub mod drill;
pub mod dump;
pub mod git_tag;
pub mod import;
pub mod prune;
pub mod report;
pub mod restic;
pub mod restore_test;
pub mod runbook;
pub mod scratch;
pub mod snapshot;
pub mod verify;
pub mod wal;

use kdl::KdlNode;

use crate::clock::Clock;
use crate::exec::redact::Redactor;
use crate::plan::compile::{Compiled, CompiledPlan, CompiledStep};
use crate::plan::decode::Decoder;
use crate::plan::diagnostic::Diagnostic;
use crate::plan::model::Step;
use crate::plan::model::StepKind;
use crate::plan::settings::Env;
use crate::plan::validate::Scope;

pub struct Context<'a> {
    pub compiled: &'a Compiled,
    pub plan: &'a CompiledPlan,
    pub step: &'a CompiledStep,
    pub env: &'a Env,
    pub redactor: &'a Redactor,
    pub clock: &'a Clock,
    /// The state database, for steps that read history (retention's newest verified dump).
    pub state: Option<&'a std::path::Path>,
    /// The plans folder (or file): report templates are named relative to it.
    pub plans: &'a std::path::Path,
}

/// Why a step could not be previewed, made ready or run. Step kinds compose their messages
/// (what failed, the tool's words); the secrets and engines below keep their own types.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("no database `{0}`")]
    NoDatabase(String),
    #[error("password of `{db}`: {source}")]
    Password {
        db: String,
        source: crate::plan::settings::EnvError,
    },
    #[error(transparent)]
    Env(#[from] crate::plan::settings::EnvError),
    #[error(transparent)]
    Engine(#[from] crate::engines::EngineError),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    #[error("{0}")]
    Failed(String),
}

impl From<String> for StepError {
    fn from(why: String) -> StepError {
        StepError::Failed(why)
    }
}

/// Into the words an activity records (its summary and log).
impl From<StepError> for String {
    fn from(e: StepError) -> String {
        e.to_string()
    }
}

impl From<&str> for StepError {
    fn from(why: &str) -> StepError {
        StepError::Failed(why.to_string())
    }
}

impl<'a> Context<'a> {
    /// The plan's `database NAME` block.
    pub fn database(&self, name: &str) -> Result<&'a crate::plan::model::Database, StepError> {
        self.plan
            .decl
            .databases
            .iter()
            .find(|d| d.name.value == name)
            .ok_or_else(|| StepError::NoDatabase(name.to_string()))
    }

    /// A database with its password resolved, ready for a tool.
    pub fn target(
        &self,
        db: &'a crate::plan::model::Database,
    ) -> Result<crate::engines::Target<'a>, StepError> {
        let password = db
            .password
            .as_ref()
            .map(|p| {
                self.env
                    .resolve(&p.source)
                    .map_err(|source| StepError::Password {
                        db: db.name.value.clone(),
                        source,
                    })
            })
            .transpose()?;
        Ok(crate::engines::Target { db, password })
    }
}

pub use crate::activity::{Extra, Outcome, Status};

/// A failed outcome: `reason` as the summary, appended to the tool's output tail.
pub(crate) fn fail(ctx: &Context, reason: String, tail: &str) -> Outcome {
    let mut log = tail.to_string();
    if !log.is_empty() && !log.ends_with('\n') {
        log.push('\n');
    }
    log.push_str(&format!("ops-run: {reason}"));
    Outcome {
        log_excerpt: ctx.redactor.redact(&log),
        ..Outcome::failed(ctx.redactor.redact(&reason))
    }
}

pub use crate::plan::kinds::KindSettings as Settings;

/// The kinds as the plan language reaches them (`plan::kinds::Kinds`): one registration line
/// per kind in each dispatch below.
pub struct Registry;

/// The registry the entry layer hands to `plan::load`.
pub static KINDS: Registry = Registry;

impl crate::plan::kinds::Kinds for Registry {
    fn settings(&self, kind: &StepKind) -> &'static Settings {
        settings(kind)
    }

    fn decode_setting(&self, kind: &mut StepKind, key: &str, node: &KdlNode, dec: &mut Decoder) {
        decode_setting(kind, key, node, dec)
    }

    fn validate(&self, step: &Step, scope: &Scope, diags: &mut Vec<Diagnostic>) {
        validate(step, scope, diags)
    }

    fn compile(&self, kind: &StepKind, cc: &mut crate::plan::compile::Compiling) {
        match kind {
            StepKind::Dump(d) => dump::compile(d, cc),
            StepKind::Snapshot(s) => snapshot::compile(s, cc),
            StepKind::Verify(v) => verify::compile(v, cc),
            StepKind::Report(r) => report::compile(r, cc),
            StepKind::GitTag(g) => git_tag::compile(g, cc),
            StepKind::Command(cmd) => command::compile(cmd, cc),
            StepKind::Runbook(r) => runbook::compile(r, cc),
            StepKind::Drill(d) => drill::compile(d, cc),
            StepKind::Copy(cp) => copy::compile(cp, cc),
            StepKind::Check(ch) => check::compile(ch, cc),
            StepKind::BaseBackup(b) => base_backup::compile(b, cc),
            StepKind::Wal(w) => wal::compile(w, cc),
        }
    }
}

pub fn settings(kind: &StepKind) -> &'static Settings {
    match kind {
        StepKind::Dump(_) => &dump::SETTINGS,
        StepKind::Snapshot(_) => &snapshot::SETTINGS,
        StepKind::Verify(_) => &verify::SETTINGS,
        StepKind::Report(_) => &report::SETTINGS,
        StepKind::GitTag(_) => &git_tag::SETTINGS,
        StepKind::Command(_) => &command::SETTINGS,
        StepKind::Runbook(_) => &runbook::SETTINGS,
        StepKind::Drill(_) => &drill::SETTINGS,
        StepKind::Copy(_) => &copy::SETTINGS,
        StepKind::Check(_) => &check::SETTINGS,
        StepKind::BaseBackup(_) => &base_backup::SETTINGS,
        StepKind::Wal(_) => &wal::SETTINGS,
    }
}

/// Decodes one kind-specific setting (a key of `keys`) into the step.
pub fn decode_setting(kind: &mut StepKind, key: &str, node: &KdlNode, dec: &mut Decoder) {
    match kind {
        StepKind::Dump(d) => dump::decode(d, key, node, dec),
        StepKind::Snapshot(s) => snapshot::decode(s, key, node, dec),
        StepKind::Verify(v) => verify::decode(v, key, node, dec),
        StepKind::Report(r) => report::decode(r, key, node, dec),
        StepKind::GitTag(g) => git_tag::decode(g, key, node, dec),
        StepKind::Command(c) => command::decode(c, key, node, dec),
        StepKind::Runbook(r) => runbook::decode(r, key, node, dec),
        StepKind::Drill(d) => drill::decode(d, key, node, dec),
        StepKind::Copy(c) => copy::decode(c, key, node, dec),
        StepKind::Check(c) => check::decode(c, key, node, dec),
        StepKind::BaseBackup(b) => base_backup::decode(b, key, node, dec),
        StepKind::Wal(w) => wal::decode(w, key, node, dec),
    }
}

/// Checks a step's own settings and references (the graph and the common settings are
/// checked by `plan::validate`).
pub fn validate(step: &Step, scope: &Scope, diags: &mut Vec<Diagnostic>) {
    let name = &step.name;
    match &step.kind {
        StepKind::Dump(d) => dump::validate(d, name, scope, diags),
        StepKind::Snapshot(s) => snapshot::validate(s, name, scope, diags),
        StepKind::Verify(v) => verify::validate(v, name, scope, diags),
        StepKind::Report(r) => report::validate(r, name, scope, diags),
        StepKind::GitTag(g) => git_tag::validate(g, name, scope, diags),
        StepKind::Command(c) => command::validate(c, name, scope, diags),
        StepKind::Runbook(r) => runbook::validate(r, name, scope, diags),
        StepKind::Drill(d) => drill::validate(d, name, scope, diags),
        StepKind::Copy(c) => copy::validate(c, name, scope, diags),
        StepKind::Check(c) => check::validate(c, name, scope, diags),
        StepKind::BaseBackup(b) => base_backup::validate(b, name, scope, diags),
        StepKind::Wal(w) => wal::validate(w, name, scope, diags),
    }
}

/// What `--dry-run` shows for a step: the exact argv (redacted), or why it cannot be built.
pub fn preview(ctx: &Context) -> Result<String, StepError> {
    match &ctx.step.decl.kind {
        StepKind::Command(c) => command::build(ctx, c).map(|spec| spec.display(ctx.redactor)),
        StepKind::Dump(d) => dump::preview(ctx, d),
        StepKind::Snapshot(s) => snapshot::preview(ctx, s),
        StepKind::Verify(v) => verify::preview(ctx, v),
        StepKind::Report(r) => report::preview(ctx, r),
        StepKind::GitTag(g) => git_tag::preview(ctx, g),
        StepKind::Runbook(r) => runbook::preview(ctx, r),
        StepKind::Drill(d) => drill::preview(ctx, d),
        StepKind::Copy(c) => copy::preview(ctx, c),
        StepKind::Check(c) => check::preview(ctx, c),
        StepKind::BaseBackup(b) => base_backup::preview(ctx, b),
        StepKind::Wal(w) => wal::preview(ctx, w),
    }
}

/// Whether a step has what it needs to run now (checked when its turn comes); `Err(why)`
/// records it as skipped.
pub fn ready(ctx: &Context) -> Result<(), StepError> {
    match &ctx.step.decl.kind {
        StepKind::Verify(v) => verify::ready(ctx, v),
        StepKind::Drill(d) => drill::ready(ctx, d),
        StepKind::Copy(c) => copy::ready(ctx, c),
        StepKind::Command(_)
        | StepKind::Dump(_)
        | StepKind::Snapshot(_)
        | StepKind::Report(_)
        | StepKind::GitTag(_)
        | StepKind::Runbook(_)
        | StepKind::Check(_)
        | StepKind::BaseBackup(_)
        | StepKind::Wal(_) => Ok(()),
    }
}

/// Cleans up what a killed ops-run left of a step outside the backup folders (a verify's
/// scratch database); called under the lock when a session begins. One line per thing found.
pub fn sweep(ctx: &Context) -> Vec<String> {
    match &ctx.step.decl.kind {
        StepKind::Verify(v) => verify::sweep(ctx, v),
        StepKind::Drill(d) => drill::sweep(ctx, d),
        StepKind::Dump(_) => dump::sweep(ctx),
        StepKind::BaseBackup(_) => base_backup::sweep(ctx),
        StepKind::Command(_)
        | StepKind::Snapshot(_)
        | StepKind::Report(_)
        | StepKind::GitTag(_)
        | StepKind::Runbook(_)
        | StepKind::Copy(_)
        | StepKind::Check(_)
        | StepKind::Wal(_) => Vec::new(),
    }
}

pub fn execute(ctx: &Context) -> Outcome {
    match &ctx.step.decl.kind {
        StepKind::Command(c) => command::execute(ctx, c),
        StepKind::Dump(d) => dump::execute(ctx, d),
        StepKind::Snapshot(s) => snapshot::execute(ctx, s),
        StepKind::Verify(v) => verify::execute(ctx, v),
        StepKind::Report(r) => report::execute(ctx, r),
        StepKind::GitTag(g) => git_tag::execute(ctx, g),
        StepKind::Runbook(r) => runbook::execute(ctx, r),
        StepKind::Drill(d) => drill::execute(ctx, d),
        StepKind::Copy(c) => copy::execute(ctx, c),
        StepKind::Check(c) => check::execute(ctx, c),
        StepKind::BaseBackup(b) => base_backup::execute(ctx, b),
        StepKind::Wal(w) => wal::execute(ctx, w),
    }
}
