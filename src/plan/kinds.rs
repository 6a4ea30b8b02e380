//! What the plan language needs of each step kind — its settings, how to decode, check and
//! compile them — as a trait that `steps` implements and the entry layer hands in: the plan
//! compiler knows no kind's file, so the plan language sits below the kinds.

use kdl::KdlNode;

use super::compile::Compiling;
use super::decode::Decoder;
use super::diagnostic::Diagnostic;
use super::model::{Step, StepKind};
use super::validate::Scope;

/// The settings a kind's block takes beside the common ones (schedule, after, timeout, …),
/// and which of them may be repeated.
pub struct KindSettings {
    pub keys: &'static [&'static str],
    pub repeatable: &'static [&'static str],
}

/// The step kinds, as the plan language reaches them.
pub trait Kinds: Sync {
    /// The kind's own settings.
    fn settings(&self, kind: &StepKind) -> &'static KindSettings;
    /// Decodes one of them (a key of `settings`) into the step.
    fn decode_setting(&self, kind: &mut StepKind, key: &str, node: &KdlNode, dec: &mut Decoder);
    /// Checks a step's own settings and references.
    fn validate(&self, step: &Step, scope: &Scope, diags: &mut Vec<Diagnostic>);
    /// Adds the step's settings with their origins, its thresholds and its implicit edges.
    fn compile(&self, kind: &StepKind, cc: &mut Compiling);
}
