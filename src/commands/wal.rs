//! `ops-run wal push PLAN/STEP %p %f` (PostgreSQL's `archive_command`) and `ops-run wal fetch
//! PLAN/STEP %f %p` (its `restore_command`): a WAL file into a `wal` step's archive and back.
//! Any failure exits non-zero, so PostgreSQL keeps the segment and tries again; neither
//! touches the state database (the server's user may not write it).

use std::path::Path;

use crate::app::App;
use crate::artifact::layout::Area;
use crate::artifact::wal::{self, Pushed, WalError};
use crate::error::Failure;
use crate::plan::model::StepKind;

/// The archive folder of a `wal` step.
fn archive(app: &App, step: &str) -> Result<std::path::PathBuf, Failure> {
    let (_loaded, compiled) = app.load()?;
    let si = compiled.find(step)?;
    let s = &compiled.steps[si];
    if !matches!(s.decl.kind, StepKind::Wal(_)) {
        return Err(Failure::Usage(format!(
            "`{}` is not a wal step: name the plan's `wal` step (PLAN/STEP)",
            s.id
        )));
    }
    Ok(compiled.plans[s.plan].dir(s.name(), Area::Wal))
}

pub fn push(app: &App, step: &str, path: &Path, name: &str) -> Result<(), Failure> {
    let dir = archive(app, step)?;
    match wal::push(&dir, path, name) {
        Ok(Pushed::Stored) => Ok(()),
        Ok(Pushed::AlreadyThere) => {
            eprintln!("{name} is already archived with the same bytes");
            Ok(())
        }
        Err(e @ WalError::BadName(_)) => Err(Failure::Usage(e.to_string())),
        Err(e) => Err(Failure::Runtime(format!("wal push {name}: {e}"))),
    }
}

pub fn fetch(app: &App, step: &str, name: &str, path: &Path) -> Result<(), Failure> {
    let dir = archive(app, step)?;
    wal::fetch(&dir, name, path).map_err(|e| match e {
        WalError::BadName(_) => Failure::Usage(e.to_string()),
        e => Failure::Runtime(format!("wal fetch {name}: {e}")),
    })
}
