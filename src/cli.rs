//! Command-line definitions (clap) only; `lib.rs` dispatches them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "ops-run",
    version,
    about = "Keeps an application's backups honest.",
    // `ops-run help [KEY]` is the help registry; `--help` still prints the usage.
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Folder of plan files (*.kdl), or one plan file [default: ./plans when it exists, else
    /// /etc/ops-run/plans when it exists, else ./plans]
    #[arg(long, global = true, env = "OPS_PLANS")]
    pub plans: Option<PathBuf>,
    /// SQLite state database [env: OPS_STATE] [default: /var/lib/ops-run/state.db]
    #[arg(long, global = true)]
    pub state: Option<PathBuf>,
    /// A dotenv file of variables; the process environment wins over it [default:
    /// /etc/ops-run/ops-run.env when it exists and can be read]
    #[arg(long, global = true)]
    pub env_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check, show and apply plans
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Run one step now (a manual action), with its hooks
    Run {
        /// PLAN/STEP, or STEP when only one plan has it
        step: String,
        /// Wait up to this long for a running apply to finish (e.g. "30s")
        #[arg(long)]
        wait: Option<String>,
    },
    /// Health of every check; exit code as a monitoring plugin (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Evaluate health without running steps; --alert sends alerts on changes
    Health {
        #[arg(long)]
        alert: bool,
    },
    /// Send a test message through one alert channel (PLAN/NAME or NAME) or all of them
    #[command(subcommand)]
    Alerts(AlertsCommand),
    /// Write the Markdown backup report of a plan
    Report {
        /// The plan (needed when there are several)
        #[arg(long)]
        plan: Option<String>,
        /// Where to write it [default: BASE/reports/backup-report-YYYYmmdd.md]
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write a commented starter plan into the plans folder (never over an existing file);
    /// --from-env reads an application's .env (Laravel) and writes the plan its Ops module ran
    Init {
        /// The application's .env: its database, APP_NAME, APP_TIMEZONE and the ops variables
        #[arg(long, value_name = "FILE")]
        from_env: Option<PathBuf>,
        /// The plan's name [default: APP_NAME of the .env, or "app"]
        #[arg(long)]
        name: Option<String>,
    },
    /// Print the shell completions of ops-run (bash, zsh or fish)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Pre-flight as the acting user, changing nothing: logins, privileges, folders,
    /// repositories, ReadWritePaths, tools, disk, channels; each problem with its fix
    /// (exit 0, 1 warnings, 2 problems)
    Doctor {
        /// Only this plan
        plan: Option<String>,
    },
    /// Write the disaster-recovery runbook of every plan (or one) to BASE/reports/dr-runbook.md
    Runbook {
        /// Only this plan (needed with --out when there are several)
        #[arg(long)]
        plan: Option<String>,
        /// Where to write it
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The contextual help registry: every key, or one
    Help { key: Option<String> },
    /// The status page, /api/status, /api/activities, /metrics and /healthz (read-only)
    Serve {
        /// Address to listen on [default: the plan's serve { listen }, else 127.0.0.1:9180]
        #[arg(long)]
        listen: Option<String>,
        /// How long an action waits for a running apply before answering 409
        #[arg(long, default_value = "30s")]
        action_wait: String,
        /// How often serve evaluates health and sends what changed to the alert channels
        #[arg(long, default_value = "1m")]
        alert_every: String,
    },
    /// The permission set and which tokens hold what (never their secrets)
    Permissions,
    /// The Prometheus metrics, to stdout or atomically to a file
    Metrics {
        /// Write to this file (node_exporter's textfile collector) instead of stdout
        #[arg(long, value_name = "FILE")]
        textfile: Option<PathBuf>,
    },
    /// List recorded activities, newest first
    Activities(ActivitiesArgs),
    /// Bring existing backup files into the layout
    #[command(subcommand)]
    Backups(BackupsCommand),
    /// Load a good dump into a database (never destroying before the replacement is complete)
    #[command(subcommand)]
    Restore(RestoreCommand),
    /// PostgreSQL's archive_command and restore_command: a WAL file into a `wal` step's
    /// archive, and back
    #[command(subcommand)]
    Wal(WalCommand),
    /// Offsite copies, from any host that has the plan and the destination's credentials
    #[command(subcommand)]
    Copy(CopyCommand),
}

#[derive(Subcommand, Debug)]
pub enum CopyCommand {
    /// Retention at a copy's destination by the step's `forget` rule, decided by ops-run from
    /// the snapshots' own tags (and this host's log, when it has one), never from times a
    /// writer of the repository chose: run it from a trusted host with its own credentials
    Forget {
        /// The copy step (PLAN/STEP, or STEP when only one plan has it)
        step: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum WalCommand {
    /// archive_command: store the file %p as %f (compressed, never overwriting a different
    /// file; the same bytes again succeed)
    Push {
        /// The wal step (PLAN/STEP)
        step: String,
        /// %p: the file's path
        path: PathBuf,
        /// %f: its name
        name: String,
    },
    /// restore_command: write the archived %f to %p (exit 1 when the archive does not hold it)
    Fetch {
        /// The wal step (PLAN/STEP)
        step: String,
        /// %f: the file's name
        name: String,
        /// %p: where to write it
        path: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum RestoreCommand {
    /// Load a dump of a dump step into TARGET: a new database on the dump's server, a `database`
    /// block of the plan, or for SQLite a file. The newest good dump unless --dump or --at.
    Db {
        /// The dump step (PLAN/STEP, or STEP when only one plan has it)
        step: String,
        /// The database (or SQLite file) to restore into
        #[arg(long)]
        to: String,
        /// This dump (its file name or path in the step's folder)
        #[arg(long, conflicts_with = "at")]
        dump: Option<String>,
        /// The newest good dump taken at or before this time (RFC 3339, or "YYYY-mm-dd HH:MM"
        /// in the plan's time zone)
        #[arg(long)]
        at: Option<String>,
        /// The newest dump at this copy step's destination (restic), checked against the
        /// sha256 it was copied with: the restore when this machine's dumps are gone
        #[arg(long, value_name = "COPY", conflicts_with_all = ["dump", "at"])]
        from: Option<String>,
        /// Put the restore in place of a TARGET that holds tables, keeping the old one
        /// (TARGET_before_YYYYmmddHHMM; SQLite: TARGET.before-YYYYmmdd-HHMM)
        #[arg(long)]
        replace: bool,
        /// Load owners, grants and definers as dumped (the restoring role must be allowed to)
        #[arg(long)]
        keep_ownership: bool,
        /// Apply the roles dumped beside the dump (`globals #true`) first
        #[arg(long)]
        with_globals: bool,
        /// PostgreSQL: load the tables' rows on this many sessions (1 or 2)
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=2))]
        sessions: u32,
        /// An encrypted dump (`….age`): the age identity file that decrypts it, as age-keygen
        /// writes it (default: the identity of the plan's verify of this dump)
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
        /// Check the dump and print what would run; change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// `restic restore` a snapshot of a snapshot step into DIR (paths appear under it as in
    /// the snapshot). The newest complete one unless --snapshot or --at.
    Files {
        /// The snapshot step (PLAN/STEP, or STEP when only one plan has it)
        step: String,
        /// The folder to restore into (empty, or --overwrite)
        #[arg(long)]
        to: PathBuf,
        /// This snapshot (an id restic knows)
        #[arg(long, conflicts_with = "at")]
        snapshot: Option<String>,
        /// The newest complete snapshot taken at or before this time
        #[arg(long)]
        at: Option<String>,
        /// Only this path of the snapshot (repeatable)
        #[arg(long)]
        include: Vec<String>,
        /// Let restic write into a folder that is not empty
        #[arg(long)]
        overwrite: bool,
        /// Print the restic command; change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Point-in-time recovery of a PostgreSQL cluster: the newest base backup that finished
    /// before --at, unpacked into an empty DATADIR, with the archived WAL replayed to --at
    Cluster {
        /// The base-backup step or its wal step (PLAN/STEP, or STEP when only one plan has it)
        step: String,
        /// The instant to recover to (RFC 3339, or `YYYY-mm-dd HH:MM[:SS]` in the plan's time
        /// zone), or `latest`: everything archived
        #[arg(long)]
        at: String,
        /// The new data directory (empty or absent)
        #[arg(long, value_name = "DATADIR")]
        to: PathBuf,
        /// The port the restored server listens on
        #[arg(long)]
        port: Option<u16>,
        /// Start the server and wait until recovery has reached the target and ended
        #[arg(long)]
        start: bool,
        /// Let the restored server archive its WAL into the same archive (it becomes the
        /// primary); without it, it archives nothing, so a rehearsal never forks the history
        #[arg(long)]
        archive: bool,
        /// Read the base backup and the WAL archive back from this copy step's destination
        /// (restic), checked against the sha256 they were copied with
        #[arg(long, value_name = "COPY")]
        from: Option<String>,
        /// An encrypted base and archive (`encrypt` on the base-backup step): the age identity
        /// file that decrypts them (default: the identity of the plan's verify of the step)
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AlertsCommand {
    /// Send a test message
    Test { channel: Option<String> },
}

#[derive(Subcommand, Debug)]
pub enum BackupsCommand {
    /// Move dumps, snapshot markers, verify logs and reports of an older folder into the layout
    Migrate {
        /// The folder to migrate from [default: the plan's base]
        #[arg(long)]
        from: Option<PathBuf>,
        /// Print the moves; change nothing
        #[arg(long)]
        dry_run: bool,
        /// The plan whose layout receives the files (needed when there are several)
        #[arg(long)]
        plan: Option<String>,
        /// The step whose files an older folder holds (needed when the plan has several
        /// steps of that kind)
        #[arg(long)]
        step: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum PlanCommand {
    /// Check every plan; diagnostics as file:line:col
    Validate,
    /// The compiled step graph: order, schedules, next due time, where each setting came from
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Run what is due (and --only/--force what is named)
    Apply(ApplyArgs),
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// Print what would run and why, with the exact argv (secrets redacted); run nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Limit the apply to these steps (repeatable); a named step without schedule runs
    #[arg(long, value_name = "STEP")]
    pub only: Vec<String>,
    /// Run the selected steps even when they are not due
    #[arg(long)]
    pub force: bool,
    /// How many independent steps may run at once
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Wait up to this long for another apply to finish (e.g. "5m") instead of exiting 75
    #[arg(long)]
    pub wait: Option<String>,
    /// At the end, write the Prometheus metrics to this file (node_exporter textfile collector)
    #[arg(long, value_name = "FILE")]
    pub metrics_textfile: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ActivitiesCommand {
    /// Print one activity with its whole (redacted) log and meta
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Recompute the log's hash chain: names the first activity changed or removed (exit 1),
    /// else prints the newest hash (compare it with /metrics or a report kept elsewhere)
    Verify,
}

#[derive(Args, Debug)]
pub struct ActivitiesArgs {
    #[command(subcommand)]
    pub show: Option<ActivitiesCommand>,
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// db_backup, storage_snapshot, verify_restore, report, git_tag, command, prune, migrate, alert
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: Option<String>,
    /// running, success, failed, incomplete, skipped, timeout, abandoned
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub plan: Option<String>,
}

impl Command {
    /// Whether the command may touch the state, a backup folder or a server: run as root, it
    /// acts as the state's owner. `init` writes the plans and the env file as whoever runs it.
    pub fn acts(&self) -> bool {
        !matches!(
            self,
            Command::Init { .. }
                | Command::Help { .. }
                | Command::Completions { .. }
                | Command::Wal(_)
        )
    }

    /// Whether the command writes the state or the backups: a user who is neither root nor
    /// the state's owner is refused.
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Command::Plan(PlanCommand::Apply(_))
                | Command::Run { .. }
                | Command::Restore(_)
                | Command::Health { alert: true }
                | Command::Alerts(_)
                | Command::Backups(_)
                | Command::Report { .. }
                | Command::Runbook { .. }
        )
    }
}
