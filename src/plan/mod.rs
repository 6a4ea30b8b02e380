//! Plans: load the files, decode KDL, validate references, compile the step graph.

pub mod compile;
pub mod decode;
pub mod diagnostic;
pub mod kinds;
pub mod model;
pub mod settings;
pub mod source;
pub mod validate;

use std::path::Path;

use compile::Compiled;
use diagnostic::Diagnostic;
use source::Sources;

use crate::plan::settings::Env;

/// The outcome of loading plans: the sources (for rendering), diagnostics, and the graph
/// when there was no error.
pub struct Loaded {
    pub sources: Sources,
    pub diagnostics: Vec<Diagnostic>,
    pub compiled: Option<Compiled>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// Every diagnostic rendered, errors first, up to `MAX_SHOWN` (then a count of the rest).
    pub fn render_diagnostics(&self) -> String {
        let mut shown: Vec<&Diagnostic> =
            self.diagnostics.iter().filter(|d| d.is_error()).collect();
        shown.extend(self.diagnostics.iter().filter(|d| !d.is_error()));
        let more = shown.len().saturating_sub(diagnostic::MAX_SHOWN);
        let mut out = shown
            .iter()
            .take(diagnostic::MAX_SHOWN)
            .map(|d| d.render(&self.sources))
            .collect::<Vec<_>>()
            .join("\n");
        if more > 0 {
            out.push_str(&format!("\n… and {more} more diagnostics not shown\n"));
        }
        out
    }
}

/// decode → validate → compile, collecting every diagnostic of every file.
pub fn load_sources(sources: Sources, env: &Env, kinds: &dyn kinds::Kinds) -> Loaded {
    let mut diagnostics = Vec::new();
    let plans = decode::decode(&sources, &mut diagnostics, kinds);
    validate::validate(&plans, env, &mut diagnostics, kinds);
    // Compile even after errors elsewhere, so a cycle is reported in the same pass.
    let compiled = compile::compile(plans, env, &mut diagnostics, kinds);
    let compiled = (!diagnostics.iter().any(Diagnostic::is_error)).then_some(compiled);
    Loaded {
        sources,
        diagnostics,
        compiled,
    }
}

/// Why plans, or a file a plan names, could not be read, or a name given on the command line
/// names nothing. Each is the operator's to fix: nothing ran (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A plans file or folder, or a template, could not be read (the words name the path).
    #[error("{0}")]
    Read(String),
    #[error("no plan named `{0}`")]
    NoPlan(String),
    #[error("several plans: name one with --plan ({0})")]
    SeveralPlans(String),
    #[error("no step named `{name}`{hint}")]
    NoStep { name: String, hint: String },
    #[error("step name `{name}` is ambiguous; name one of: {ids}")]
    AmbiguousStep { name: String, ids: String },
    #[error("{0}")]
    TagPattern(String),
}

pub fn load(path: &Path, env: &Env, kinds: &dyn kinds::Kinds) -> Result<Loaded, PlanError> {
    Ok(load_sources(Sources::load(path)?, env, kinds))
}
