//! The top-level failure of a command and the one place that maps failures to exit codes.
//! Subsystems have typed errors of their own (`StoreError`, `LockError`); they become a
//! `Failure` through `From`, so every command and `status`'s UNKNOWN line use one mapping.

use crate::lock::LockError;
use crate::plan::PlanError;
use crate::plan::settings::EnvError;
use crate::report::ReportError;
use crate::steps::StepError;
use crate::store::StoreError;
use crate::web::WebError;

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad command line or environment: nothing ran (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The environment (`--env-file`) could not be read: nothing ran (exit 2).
    #[error(transparent)]
    Env(#[from] EnvError),
    /// Plans could not be read, or a name on the command line names nothing: nothing ran
    /// (exit 2).
    #[error(transparent)]
    Plans(#[from] PlanError),
    /// Invalid plans, already rendered as diagnostics: nothing ran (exit 2).
    #[error("{0}")]
    Plan(String),
    /// Another apply holds the lock: nothing ran (exit 75).
    #[error("another apply holds the lock ({0}); nothing ran")]
    Locked(String),
    /// The state database could not be opened, read or written (exit 1).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A step could not be prepared or run outside the runner (exit 1).
    #[error(transparent)]
    Step(#[from] StepError),
    /// A report or runbook was not written (exit 1).
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The metrics could not be rendered or written (exit 1).
    #[error(transparent)]
    Web(#[from] WebError),
    /// Something broke at run time (exit 1).
    #[error("{0}")]
    Runtime(String),
    /// One or more steps failed; the details are already printed (exit 1).
    #[error("one or more steps failed")]
    StepsFailed,
    /// A check found warnings (1) or problems (2), already printed (`doctor`).
    #[error("the checks found problems")]
    Checks(i32),
}

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_LOCKED: i32 = 75;

impl From<LockError> for Failure {
    fn from(e: LockError) -> Self {
        match e {
            LockError::Held(holder) => Failure::Locked(holder),
            LockError::Io(m) => Failure::Runtime(m),
            // The operator's to settle: nothing ran (exit 2).
            LockError::Base(m) => Failure::Usage(m),
        }
    }
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Usage(_) | Failure::Env(_) | Failure::Plans(_) | Failure::Plan(_) => {
                EXIT_USAGE
            }
            Failure::Locked(_) => EXIT_LOCKED,
            Failure::Store(_)
            | Failure::Step(_)
            | Failure::Report(_)
            | Failure::Web(_)
            | Failure::Runtime(_)
            | Failure::StepsFailed => EXIT_FAILED,
            Failure::Checks(code) => *code,
        }
    }

    /// What to print on stderr (empty when already printed).
    pub fn message(&self) -> String {
        match self {
            Failure::Plan(rendered) => rendered.clone(),
            Failure::StepsFailed | Failure::Checks(_) => String::new(),
            other => format!("error: {other}\n"),
        }
    }

    /// The line a monitoring plugin shows when `status` cannot evaluate: `UNKNOWN: why`.
    pub fn unknown_line(&self) -> String {
        let why = match self {
            // Rendered diagnostics: their last line is the count (`2 errors in plans`).
            Failure::Plan(rendered) => rendered
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid plans")
                .trim()
                .to_string(),
            other => other.to_string(),
        };
        format!("UNKNOWN: {why}")
    }
}
