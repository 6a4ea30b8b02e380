//! Step kinds that validate and order today but do not run yet.

use crate::plan::compile::CompiledStep;

pub fn message(step: &CompiledStep) -> String {
    format!(
        "{} steps are not implemented yet: `{}` validates and is ordered, but does not run",
        step.decl.kind.keyword(),
        step.id
    )
}
