//! The top-level failure of a command and the one place that maps failures to exit codes.

pub enum Failure {
    /// Bad command line or environment: nothing ran (exit 2).
    Usage(String),
    /// Invalid plans, already rendered as diagnostics: nothing ran (exit 2).
    Plan(String),
    /// Another apply holds the lock: nothing ran (exit 75).
    Locked(String),
    /// Something broke at run time (exit 1).
    Runtime(String),
    /// One or more steps failed; the details are already printed (exit 1).
    StepsFailed,
}

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_LOCKED: i32 = 75;

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Usage(_) | Failure::Plan(_) => EXIT_USAGE,
            Failure::Locked(_) => EXIT_LOCKED,
            Failure::Runtime(_) | Failure::StepsFailed => EXIT_FAILED,
        }
    }

    /// What to print on stderr (empty when already printed).
    pub fn message(&self) -> String {
        match self {
            Failure::Usage(m) => format!("error: {m}\n"),
            Failure::Plan(rendered) => rendered.clone(),
            Failure::Locked(holder) => {
                format!("error: another apply holds the lock ({holder}); nothing ran\n")
            }
            Failure::Runtime(m) => format!("error: {m}\n"),
            Failure::StepsFailed => String::new(),
        }
    }
}
