//! ops-run: plans in KDL → a step graph → steps run as subprocesses, every activity in SQLite.

pub mod app;
pub mod artifact;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod console;
pub mod due;
pub mod engines;
pub mod error;
pub mod exec;
pub mod graph;
pub mod lock;
pub mod plan;
pub mod retention;
pub mod runner;
pub mod settings;
pub mod steps;
pub mod store;
pub mod units;

use cli::{BackupsCommand, Cli, Command, PlanCommand};

/// Runs one command line; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    let result = app::App::new(&cli).and_then(|app| match &cli.command {
        Command::Plan(PlanCommand::Validate) => commands::validate::run(&app),
        Command::Plan(PlanCommand::Show { json }) => commands::show::run(&app, *json),
        Command::Plan(PlanCommand::Apply(args)) => commands::apply::run(&app, args),
        Command::Run { step, wait } => commands::apply::run_one(&app, step, wait.as_deref()),
        Command::Activities(args) => commands::activities::run(&app, args),
        Command::Backups(BackupsCommand::Migrate {
            from,
            dry_run,
            plan,
        }) => commands::migrate::run(&app, from.as_deref(), *dry_run, plan.as_deref()),
    });
    match result {
        Ok(()) => error::EXIT_OK,
        Err(f) => {
            eprint!("{}", f.message());
            f.exit_code()
        }
    }
}
