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

/// The archive folder of a `wal` step, and the recipients its files are encrypted to (those of
/// its base-backup step's `encrypt`).
fn archive(
    app: &App,
    step: &str,
) -> Result<(std::path::PathBuf, Option<Vec<age::x25519::Recipient>>), Failure> {
    let (_loaded, compiled) = app.load()?;
    let si = compiled.find(step)?;
    let s = &compiled.steps[si];
    let StepKind::Wal(w) = &s.decl.kind else {
        return Err(Failure::Usage(format!(
            "`{}` is not a wal step: name the plan's `wal` step (PLAN/STEP)",
            s.id
        )));
    };
    let plan = &compiled.plans[s.plan];
    let base = plan.decl.wal_base(w);
    let encrypt = plan.decl.steps.iter().find_map(|b| match &b.kind {
        StepKind::BaseBackup(bb) if Some(b.name.value.as_str()) == base => bb.encrypt.as_ref(),
        _ => None,
    });
    let to = encrypt
        .map(|e| e.resolve())
        .transpose()
        .map_err(|e| Failure::Runtime(format!("wal push: cannot encrypt: {e}")))?;
    Ok((plan.dir(s.name(), Area::Wal), to))
}

pub fn push(app: &App, step: &str, path: &Path, name: &str) -> Result<(), Failure> {
    let (dir, to) = archive(app, step)?;
    match wal::push(&dir, path, name, to.as_deref()) {
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
    let (dir, _) = archive(app, step)?;
    wal::fetch(&dir, name, path).map_err(|e| match e {
        WalError::BadName(_) => Failure::Usage(e.to_string()),
        e => Failure::Runtime(format!("wal fetch {name}: {e}")),
    })
}
