//! ops-run: plans in KDL → a step graph → steps run as subprocesses, every activity in SQLite.

/// `println!` that does not panic when stdout is closed (`ops-run status --json | head`).
/// SIGPIPE stays ignored, as Rust sets it, so a tool that stops reading a dump fed to it is an
/// error to handle, not a signal that kills ops-run.
#[macro_export]
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// `print!` that does not panic when stdout is closed.
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

pub mod activity;
pub mod alert;
pub mod app;
pub mod artifact;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod completions;
pub mod console;
pub mod due;
pub mod engines;
pub mod error;
pub mod exec;
pub mod facts;
pub mod graph;
pub mod health;
pub mod help;
pub mod identity;
pub mod lock;
// The man pages' text is build.rs's; compiled here for its tests.
#[cfg(test)]
#[allow(dead_code)]
mod manual;
pub mod plan;
pub mod recorder;
pub mod report;
pub mod retention;
pub mod runner;
pub mod session;
pub mod steps;
pub mod store;
pub mod units;
pub mod web;

use cli::{
    AlertsCommand, BackupsCommand, Cli, Command, CopyCommand, PlanCommand, RestoreCommand,
    WalCommand,
};

/// Runs one command line; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    // What a step's processes orphan comes back to ops-run, to be ended with its step.
    exec::escape::become_subreaper();
    // Nothing ops-run writes (plans, dumps, logs, reports, the state) is ever group- or
    // world-writable, whatever umask it was started with: a writable plan is a command that
    // runs as the backup user.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    rustix::process::umask(old | rustix::fs::Mode::from_raw_mode(0o022));
    // `status` speaks the monitoring-plugin convention even when it cannot start.
    if let Command::Status { json } = &cli.command {
        return match app::App::new(&cli) {
            Ok(app) => commands::status::run(&app, *json),
            Err(f) => {
                eprint!("{}", f.message());
                outln!("{}", f.unknown_line());
                commands::status::UNKNOWN
            }
        };
    }
    let result = app::App::new(&cli).and_then(|app| {
        // Commands that start processes or write: a SIGINT/SIGTERM ends their children and
        // is recorded (the others keep the default: they end at once). Installed once the
        // acting user is settled (its handler thread is the first one).
        if matches!(
            &cli.command,
            Command::Plan(PlanCommand::Apply(_))
                | Command::Run { .. }
                | Command::Restore(_)
                | Command::Health { alert: true }
                | Command::Alerts(_)
                | Command::Backups(_)
        ) {
            exec::signals::install();
        }
        dispatch(&app, &cli)
    });
    match result {
        Ok(()) => error::EXIT_OK,
        Err(f) => {
            eprint!("{}", f.message());
            f.exit_code()
        }
    }
}

/// The command, once the app is set up.
fn dispatch(app: &app::App, cli: &Cli) -> Result<(), error::Failure> {
    match &cli.command {
        Command::Plan(PlanCommand::Validate) => commands::validate::run(app),
        Command::Plan(PlanCommand::Show { json }) => commands::show::run(app, *json),
        Command::Plan(PlanCommand::Apply(args)) => commands::apply::run(app, args),
        Command::Run { step, wait } => commands::apply::run_one(app, step, wait.as_deref()),
        Command::Activities(args) => commands::activities::run(app, args),
        Command::Status { .. } => unreachable!("handled above"),
        Command::Health { alert } => commands::status::health(app, *alert),
        Command::Alerts(AlertsCommand::Test { channel }) => {
            commands::alerts::test(app, channel.as_deref())
        }
        Command::Report { plan, out } => {
            commands::alerts::report(app, plan.as_deref(), out.as_deref())
        }
        Command::Init { from_env, name } => commands::init::run(
            app,
            &commands::init::InitArgs {
                from_env: from_env.as_deref(),
                name: name.as_deref(),
            },
        ),
        Command::Runbook { plan, out } => app.load().and_then(|(_, compiled)| {
            // Without --plan (and --out), every plan's runbook in its own base.
            let plans: Vec<&plan::compile::CompiledPlan> = match (plan, out) {
                (None, None) => compiled.plans.iter().collect(),
                _ => vec![compiled.plan_named(plan.as_deref())?],
            };
            let store = app.open_reader()?;
            for p in plans {
                let path = report::runbook::write(
                    &compiled,
                    p,
                    &app.env,
                    app.clock.now(),
                    out.as_deref(),
                    store.as_ref(),
                )?;
                crate::outln!("{}", path.display());
            }
            Ok(())
        }),
        Command::Help { key } => commands::help::run(key.as_deref()),
        Command::Doctor { plan } => commands::doctor::run(app, plan.as_deref()),
        Command::Completions { shell } => {
            crate::out!("{}", completions::script::<Cli>(*shell));
            Ok(())
        }
        Command::Serve {
            listen,
            action_wait,
            alert_every,
        } => {
            let parse = |flag: &str, v: &str| {
                crate::units::duration::parse(v)
                    .map_err(|e| error::Failure::Usage(format!("{flag}: {e}")))
            };
            let wait = parse("--action-wait", action_wait)?;
            let every = parse("--alert-every", alert_every)?;
            web::serve(app, listen.as_deref(), wait, every)
        }
        Command::Permissions => app.load().map(|(_, compiled)| web::auth::print(&compiled)),
        Command::Metrics { textfile } => commands::status::metrics(app, textfile.as_deref()),
        Command::Restore(RestoreCommand::Db {
            step,
            to,
            dump,
            at,
            from,
            replace,
            keep_ownership,
            with_globals,
            sessions,
            identity,
            dry_run,
        }) => commands::restore::db(
            app,
            &commands::restore::DbArgs {
                step,
                to,
                dump: dump.as_deref(),
                at: at.as_deref(),
                from: from.as_deref(),
                replace: *replace,
                dry_run: *dry_run,
                keep_ownership: *keep_ownership,
                with_globals: *with_globals,
                sessions: *sessions,
                identity: identity.as_deref(),
            },
        ),
        Command::Restore(RestoreCommand::Files {
            step,
            to,
            snapshot,
            at,
            include,
            overwrite,
            dry_run,
        }) => commands::restore::files(
            app,
            &commands::restore::FilesArgs {
                step,
                to,
                snapshot: snapshot.as_deref(),
                at: at.as_deref(),
                include,
                overwrite: *overwrite,
                dry_run: *dry_run,
            },
        ),
        Command::Restore(RestoreCommand::Cluster {
            step,
            at,
            to,
            port,
            start,
            archive,
            from,
            identity,
        }) => commands::cluster::run(
            app,
            &commands::cluster::ClusterArgs {
                step,
                from: from.as_deref(),
                at,
                to,
                port: *port,
                start: *start,
                archive: *archive,
                identity: identity.as_deref(),
            },
        ),
        Command::Copy(CopyCommand::Forget { step }) => commands::copy::forget(app, step),
        Command::Wal(WalCommand::Push { step, path, name }) => {
            commands::wal::push(app, step, path, name)
        }
        Command::Wal(WalCommand::Fetch { step, name, path }) => {
            commands::wal::fetch(app, step, name, path)
        }
        Command::Backups(BackupsCommand::Migrate {
            from,
            dry_run,
            plan,
            step,
        }) => commands::migrate::run(
            app,
            from.as_deref(),
            *dry_run,
            plan.as_deref(),
            step.as_deref(),
        ),
    }
}
