//! The typed plan: what decoding produces, every value with the span it came from.

use std::time::Duration;

use chrono_tz::Tz;

use super::source::Span;
use crate::activity::ActivityType;
use crate::units::keep::Keep;
use crate::units::schedule::Schedule;

#[derive(Clone, Debug)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

impl<T> Spanned<T> {
    pub fn new(value: T, span: Span) -> Self {
        Spanned { value, span }
    }
}

/// Where a value (often a secret) comes from: written in the plan, an environment variable, a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueSource {
    Literal(String),
    Env(String),
    File(String),
    /// A systemd credential: the file NAME in `$CREDENTIALS_DIRECTORY` (`LoadCredential=`).
    Credential(String),
}

#[derive(Clone, Debug)]
pub struct Sourced {
    pub source: ValueSource,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub name: Spanned<String>,
    pub file: usize,
    pub span: Span,
    pub base: Option<Spanned<String>>,
    pub timezone: Option<Spanned<Tz>>,
    pub tools: Vec<(Spanned<String>, Spanned<String>)>,
    pub databases: Vec<Database>,
    pub steps: Vec<Step>,
    pub alerts: Vec<Alert>,
    /// The dead-man's thresholds for the newest `plan apply`.
    pub apply_stale_after: Option<Spanned<Duration>>,
    pub apply_fail_after: Option<Spanned<Duration>>,
    pub ping: Option<Ping>,
    pub serve: Option<Serve>,
    pub runbook: Option<RunbookInfo>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    Mysql,
    Mariadb,
    Sqlite,
}

impl Engine {
    pub const NAMES: [&'static str; 4] = [
        Engine::ALL[0].name(),
        Engine::ALL[1].name(),
        Engine::ALL[2].name(),
        Engine::ALL[3].name(),
    ];

    pub const ALL: [Engine; 4] = [
        Engine::Postgres,
        Engine::Mysql,
        Engine::Mariadb,
        Engine::Sqlite,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
            Engine::Mariadb => "mariadb",
            Engine::Sqlite => "sqlite",
        }
    }

    pub fn parse(s: &str) -> Option<Engine> {
        Engine::ALL.into_iter().find(|e| e.name() == s)
    }
}

#[derive(Clone, Debug)]
pub struct Database {
    pub name: Spanned<String>,
    pub span: Span,
    pub engine: Option<Spanned<Engine>>,
    /// An `engine` node was written (even if its value was invalid and already reported).
    pub engine_given: bool,
    pub host: Option<Spanned<String>>,
    pub port: Option<Spanned<u16>>,
    pub dbname: Option<Spanned<String>>,
    pub user: Option<Spanned<String>>,
    pub password: Option<Sourced>,
    pub path: Option<Spanned<String>>,
}

#[derive(Clone, Debug)]
pub struct Step {
    pub name: Spanned<String>,
    /// The whole node, for diagnostics that point at a step.
    pub span: Span,
    pub kind: StepKind,
    pub schedule: Option<Spanned<Schedule>>,
    pub after: Vec<Spanned<String>>,
    /// Only on `command` steps: run as a hook before each named step.
    pub before: Vec<Spanned<String>>,
    pub timeout: Option<Spanned<Duration>>,
    pub retry_after: Option<Spanned<Duration>>,
}

#[derive(Clone, Debug)]
pub enum StepKind {
    Dump(Dump),
    Snapshot(Snapshot),
    Verify(Verify),
    Report(Report),
    GitTag(GitTag),
    Command(Command),
    Runbook(Runbook),
    Drill(Drill),
    Copy(OffsiteCopy),
    Check(RepoCheck),
    BaseBackup(BaseBackup),
    Wal(WalArchive),
}

impl Plan {
    /// Every step with the layout area it writes into (for `layout::step_dir`).
    pub fn step_areas(
        &self,
    ) -> impl Iterator<Item = (&str, Option<crate::artifact::layout::Area>)> + Clone {
        self.steps
            .iter()
            .map(|s| (s.name.value.as_str(), s.kind.area()))
    }
}

impl Plan {
    /// The restore tests (`verify`, `drill`) of the dump or base-backup step `of`, with the
    /// step each one is.
    pub fn restore_tests_of<'p>(
        &'p self,
        of: &'p str,
    ) -> impl Iterator<Item = (&'p Step, &'p Verify)> + 'p {
        self.steps.iter().filter_map(move |s| {
            let v = match &s.kind {
                StepKind::Verify(v) => v,
                StepKind::Drill(d) => &d.restore,
                _ => return None,
            };
            let restores = v.dump.as_ref().or(v.base_backup.as_ref());
            restores.is_some_and(|r| r.value == of).then_some((s, v))
        })
    }

    /// The `wal` steps that continue the base backups of step `base` (a plan has one).
    pub fn wals_of<'p>(&'p self, base: &'p str) -> impl Iterator<Item = &'p Step> + 'p {
        self.steps.iter().filter(move |s| match &s.kind {
            StepKind::Wal(w) => self.wal_base(w) == Some(base),
            _ => false,
        })
    }

    /// The base-backup step whose bases a `wal` step continues: the one it names, else the
    /// plan's only base-backup of the same database.
    pub fn wal_base(&self, w: &WalArchive) -> Option<&str> {
        let bases = self.steps.iter().filter_map(|s| match &s.kind {
            StepKind::BaseBackup(b) => Some((s.name.value.as_str(), b)),
            _ => None,
        });
        match &w.base_backup {
            Some(n) => bases.map(|(name, _)| name).find(|name| *name == n.value),
            None => {
                let same: Vec<&str> = bases
                    .filter(|(_, b)| {
                        b.database.as_ref().map(|d| &d.value)
                            == w.database.as_ref().map(|d| &d.value)
                    })
                    .map(|(name, _)| name)
                    .collect();
                match same.as_slice() {
                    [one] => Some(one),
                    _ => None,
                }
            }
        }
    }
}

impl Dump {
    /// The dump's compression: gzip unless the plan says zstd.
    pub fn codec(&self) -> crate::artifact::codec::Codec {
        self.compression
            .as_ref()
            .map_or(crate::artifact::codec::Codec::Gzip, |c| c.value)
    }
}

impl StepKind {
    /// The layout's area this kind writes into, if any.
    pub fn area(&self) -> Option<crate::artifact::layout::Area> {
        use crate::artifact::layout::Area;
        match self {
            StepKind::Dump(_) => Some(Area::Dumps),
            StepKind::Snapshot(_) => Some(Area::Snapshots),
            StepKind::Verify(_) | StepKind::Drill(_) => Some(Area::VerifyLogs),
            StepKind::BaseBackup(_) => Some(Area::Base),
            StepKind::Wal(_) => Some(Area::Wal),
            StepKind::Report(_)
            | StepKind::GitTag(_)
            | StepKind::Command(_)
            | StepKind::Runbook(_)
            | StepKind::Copy(_)
            | StepKind::Check(_) => None,
        }
    }

    /// Every kind, with empty settings: the one list a new kind joins (and `keyword` below;
    /// the compiler names the rest).
    pub fn all() -> [StepKind; 12] {
        [
            StepKind::Dump(Dump::default()),
            StepKind::Snapshot(Snapshot::default()),
            StepKind::Verify(Verify::default()),
            StepKind::Report(Report::default()),
            StepKind::GitTag(GitTag::default()),
            StepKind::Command(Command::default()),
            StepKind::Runbook(Runbook::default()),
            StepKind::Drill(Drill::default()),
            StepKind::Copy(OffsiteCopy::default()),
            StepKind::Check(RepoCheck::default()),
            StepKind::BaseBackup(BaseBackup::default()),
            StepKind::Wal(WalArchive::default()),
        ]
    }

    /// The empty kind a plan keyword (`dump`, `git-tag`, …) opens.
    pub fn for_keyword(keyword: &str) -> Option<StepKind> {
        StepKind::all().into_iter().find(|k| k.keyword() == keyword)
    }

    /// The keyword in the plan language.
    pub fn keyword(&self) -> &'static str {
        match self {
            StepKind::Dump(_) => "dump",
            StepKind::Snapshot(_) => "snapshot",
            StepKind::Verify(_) => "verify",
            StepKind::Report(_) => "report",
            StepKind::GitTag(_) => "git-tag",
            StepKind::Command(_) => "command",
            StepKind::Runbook(_) => "runbook",
            StepKind::Drill(_) => "drill",
            StepKind::Copy(_) => "copy",
            StepKind::Check(_) => "check",
            StepKind::BaseBackup(_) => "base-backup",
            StepKind::Wal(_) => "wal",
        }
    }

    /// The activity `type` recorded in `ops_activities`.
    pub fn activity_type(&self) -> ActivityType {
        match self {
            StepKind::Dump(_) => ActivityType::DbBackup,
            StepKind::Snapshot(_) => ActivityType::StorageSnapshot,
            StepKind::Verify(_) => ActivityType::VerifyRestore,
            StepKind::Report(_) => ActivityType::Report,
            StepKind::GitTag(_) => ActivityType::GitTag,
            StepKind::Command(_) => ActivityType::Command,
            StepKind::Runbook(_) => ActivityType::Report,
            StepKind::Drill(_) => ActivityType::DrDrill,
            StepKind::Copy(_) => ActivityType::OffsiteCopy,
            StepKind::Check(_) => ActivityType::RepoCheck,
            StepKind::BaseBackup(_) => ActivityType::BaseBackup,
            StepKind::Wal(_) => ActivityType::WalArchive,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Dump {
    pub database: Option<Spanned<String>>,
    pub stale_after: Option<Spanned<Duration>>,
    pub fail_after: Option<Spanned<Duration>>,
    pub min_size: Option<Spanned<u64>>,
    pub max_shrink: Option<Spanned<f64>>,
    pub keep: Option<Spanned<Keep>>,
    pub compression_level: Option<Spanned<u32>>,
    /// `compression "gzip"` (the default) or `"zstd"`.
    pub compression: Option<Spanned<crate::artifact::codec::Codec>>,
    /// zstd's long-distance matching (a 128 MiB window).
    pub zstd_long: Option<Spanned<bool>>,
    /// Also dump the server's roles (`globals-….sql.gz` beside each dump).
    pub globals: Option<Spanned<bool>>,
    /// With their passwords (hashes); off by default.
    pub role_passwords: Option<Spanned<bool>>,
    /// `row-drop warn="50%" fail="90%"`: the share of a table's rows whose loss since the
    /// previous dump is a warning, a failure.
    pub row_drop_warn: Option<Spanned<f64>>,
    pub row_drop_fail: Option<Spanned<f64>>,
    /// `min-rows N`: losses of fewer rows are never a drop (default 1000).
    pub min_rows: Option<Spanned<u64>>,
    /// `allow-drop "sessions" "cache"`: tables that may shrink or vanish.
    pub allow_drop: Vec<Spanned<String>>,
    /// `expect-tables "customers" "orders"`: a dump without one of them fails.
    pub expect_tables: Vec<Spanned<String>>,
    /// `encrypt { recipient "age1…"; recipients-file "…" }`: the dump is written as an age
    /// file to these public keys.
    pub encrypt: Option<Encrypt>,
}

/// The recipients a dump is encrypted to (checked when decoded: each is an `age1…` key).
#[derive(Clone, Debug)]
pub struct Encrypt {
    pub span: Span,
    pub recipients: Vec<Spanned<String>>,
    /// Files of recipients (`age -R` format), read when the step runs.
    pub files: Vec<Spanned<String>>,
}

impl Encrypt {
    /// `age, to age1…, the recipients in FILE` (for `plan show`).
    pub fn describe(&self) -> String {
        let mut to: Vec<String> = self.recipients.iter().map(|r| r.value.clone()).collect();
        to.extend(
            self.files
                .iter()
                .map(|f| format!("the recipients in {}", f.value)),
        );
        format!("age, to {}", to.join(", "))
    }

    /// The recipients, the files read now.
    pub fn resolve(&self) -> Result<Vec<age::x25519::Recipient>, String> {
        let written: Vec<&str> = self.recipients.iter().map(|r| r.value.as_str()).collect();
        let files: Vec<&str> = self.files.iter().map(|f| f.value.as_str()).collect();
        crate::artifact::seal::resolve(&written, &files)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncompletePolicy {
    Fail,
    Warn,
}

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub paths: Vec<Spanned<String>>,
    pub exclude: Vec<Spanned<String>>,
    pub tags: Vec<Spanned<String>>,
    pub repository: Option<Sourced>,
    /// Further `repository` lines: the same snapshot made in each, with the same password.
    pub more_repositories: Vec<Sourced>,
    pub password: Option<Sourced>,
    pub stale_after: Option<Spanned<Duration>>,
    pub incomplete: Option<Spanned<IncompletePolicy>>,
    pub init: Option<Spanned<bool>>,
    pub forget: Option<Spanned<Keep>>,
}

#[derive(Clone, Debug)]
pub struct Expect {
    pub sql: Spanned<String>,
    pub min: Option<Spanned<i64>>,
}

/// What an import does with the dump's owners and privileges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// Leave them out: the restored objects belong to whoever loads them (the default).
    Ignore,
    /// Load them as dumped (the loading role must be allowed to).
    Keep,
}

#[derive(Clone, Debug, Default)]
pub struct Verify {
    pub dump: Option<Spanned<String>>,
    /// `base-backup STEP`: the restore test of a PostgreSQL base backup (and its WAL) instead
    /// of a dump.
    pub base_backup: Option<Spanned<String>>,
    /// A drill's `pitr #true`: the base backup is recovered to a random instant of the archived
    /// window instead of its end.
    pub pitr: Option<Spanned<bool>>,
    pub overdue_after: Option<Spanned<Duration>>,
    pub min_tables: Option<Spanned<u64>>,
    pub expects: Vec<Expect>,
    pub verify_database: Option<Spanned<String>>,
    pub ownership: Option<Spanned<Ownership>>,
    /// `from COPY`: the dump is read from that copy's destination, not from this machine.
    pub from: Option<Spanned<String>>,
    /// PostgreSQL import sessions: 2 (the default) or 1.
    pub sessions: Option<Spanned<u32>>,
    /// `identity file="…"` (`env=`, `credential=`): the age identity that decrypts an
    /// encrypted dump.
    pub identity: Option<Sourced>,
}

/// A `drill` step: a rehearsal of the recovery on scratch targets.
#[derive(Clone, Debug, Default)]
pub struct Drill {
    /// The database part, as a verify restores it (`dump`, `min-tables`, `expect`,
    /// `ownership`, `verify-database`, and the check's `overdue-after`).
    pub restore: Verify,
    pub snapshot: Option<Spanned<String>>,
    pub sample: Option<Spanned<Sample>>,
    pub max_mismatch: Option<Spanned<u64>>,
    /// Recovery time and recovery point objectives.
    pub rto: Option<Spanned<Duration>>,
    pub rpo: Option<Spanned<Duration>>,
}

/// A `copy` step: every good dump of a `dump` step (with its sidecar and roles), one restic
/// snapshot each, in a repository elsewhere.
#[derive(Clone, Debug, Default)]
pub struct OffsiteCopy {
    pub dump: Option<Spanned<String>>,
    /// `base-backup STEP`: its base backups (one snapshot each) and its WAL archive (a
    /// snapshot of the folder per run) instead of a dump's files.
    pub base_backup: Option<Spanned<String>>,
    pub repository: Option<Sourced>,
    pub password: Option<Sourced>,
    pub init: Option<Spanned<bool>>,
    pub stale_after: Option<Spanned<Duration>>,
    /// `restic forget` at the destination, for this step's snapshots only (off by default).
    pub forget: Option<Spanned<Keep>>,
    /// restic's `--limit-upload`, in bytes per second.
    pub limit_upload: Option<Spanned<u64>>,
}

/// A `base-backup` step (type `base_backup`): a PostgreSQL cluster's physical copy
/// (`pg_basebackup`, checked by `pg_verifybackup`), one zstd tar per run.
#[derive(Clone, Debug, Default)]
pub struct BaseBackup {
    pub database: Option<Spanned<String>>,
    pub stale_after: Option<Spanned<Duration>>,
    pub fail_after: Option<Spanned<Duration>>,
    pub keep: Option<Spanned<Keep>>,
    pub compression_level: Option<Spanned<u32>>,
    /// `encrypt { … }`: the bases, and the WAL archived for them, are age files.
    pub encrypt: Option<Encrypt>,
}

/// A `wal` step (type `wal_archive`): the WAL a PostgreSQL server archives through
/// `ops-run wal push`; the step prunes what no kept base backup needs and checks for gaps.
#[derive(Clone, Debug, Default)]
pub struct WalArchive {
    pub database: Option<Spanned<String>>,
    /// The base-backup step whose kept bases bound what is pruned (default: the plan's one
    /// base-backup of the same database).
    pub base_backup: Option<Spanned<String>>,
    pub stale_after: Option<Spanned<Duration>>,
    pub fail_after: Option<Spanned<Duration>>,
}

/// A `check` step: `restic check` of a snapshot step's repository or a copy's destination.
#[derive(Clone, Debug, Default)]
pub struct RepoCheck {
    pub snapshot: Option<Spanned<String>>,
    pub copy: Option<Spanned<String>>,
    pub read_data_subset: Option<Spanned<DataSubset>>,
    pub overdue_after: Option<Spanned<Duration>>,
}

/// How much of the repository's data a check reads back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSubset {
    /// One `n/M` part per run, the next part on the next run.
    Rotating(u32),
    /// A random share, as restic takes it (`"5%"`).
    Percent(String),
}

/// How many restored files a drill compares with the live ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sample {
    Count(u64),
    Percent(u32),
}

/// A `runbook` step: no settings of its own.
#[derive(Clone, Debug, Default)]
pub struct Runbook {}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub template: Option<Spanned<String>>,
}

#[derive(Clone, Debug, Default)]
pub struct GitTag {
    pub repository: Option<Spanned<String>>,
    pub remote: Option<Spanned<String>>,
    pub deploy_key: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub git_ref: Option<Spanned<String>>,
}

#[derive(Clone, Debug, Default)]
pub struct Command {
    /// `run "prog" "arg"…`: executed directly, no shell.
    pub run: Option<Spanned<Vec<String>>>,
    /// `shell "…"`: executed by `sh -c`, only when the plan asks for it.
    pub shell: Option<Spanned<String>>,
    pub env: Vec<(Spanned<String>, Sourced)>,
    pub dir: Option<Spanned<String>>,
    /// `always #true`: as an `after` hook, run even when the step it follows failed (to undo
    /// what a `before` hook did, such as maintenance mode).
    pub always: Option<Spanned<bool>>,
    /// `on-failure STEP`: a hook that runs after STEP only when STEP failed.
    pub on_failure: Vec<Spanned<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertKind {
    Slack,
    Webhook,
    Command,
    Email,
}

impl AlertKind {
    pub const ALL: [AlertKind; 4] = [
        AlertKind::Slack,
        AlertKind::Webhook,
        AlertKind::Command,
        AlertKind::Email,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AlertKind::Slack => "slack",
            AlertKind::Webhook => "webhook",
            AlertKind::Command => "command",
            AlertKind::Email => "email",
        }
    }

    pub fn parse(s: &str) -> Option<AlertKind> {
        AlertKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

#[derive(Clone, Debug)]
pub struct Alert {
    pub name: Spanned<String>,
    pub kind: AlertKind,
    pub span: Span,
    pub webhook: Option<Sourced>,
    pub url: Option<Sourced>,
    pub run: Option<Spanned<Vec<String>>>,
    pub renotify_after: Option<Spanned<Duration>>,
    pub timeout: Option<Spanned<Duration>>,
    pub include_logs: Option<Spanned<bool>>,
    /// Email: `smtp "smtp://host:587"` (or `smtps://host:465`), `starttls`, `from`, `to`…,
    /// `username`, `password`.
    pub smtp: Option<Spanned<String>>,
    pub starttls: Option<Spanned<bool>>,
    pub from: Option<Spanned<String>>,
    pub to: Vec<Spanned<String>>,
    pub username: Option<Spanned<String>>,
    pub password: Option<Sourced>,
}

/// Who answers for a plan's recovery, printed at the end of its runbook.
#[derive(Clone, Debug, Default)]
pub struct RunbookInfo {
    pub owner: Option<Spanned<String>>,
    pub contact: Option<Spanned<String>>,
    pub note: Option<Spanned<String>>,
}

#[derive(Clone, Debug)]
pub struct Ping {
    pub span: Span,
    pub url: Option<Sourced>,
    pub timeout: Option<Spanned<Duration>>,
}

#[derive(Clone, Debug)]
pub struct Token {
    pub name: Spanned<String>,
    pub secret: Option<Sourced>,
    pub allow: Vec<Spanned<String>>,
}

#[derive(Clone, Debug)]
pub struct Serve {
    pub span: Span,
    pub listen: Option<Spanned<String>>,
    pub tokens: Vec<Token>,
    /// Names the page may be asked for by (`Host`) besides loopback names and IP addresses;
    /// `"*"` allows any.
    pub allowed_hosts: Vec<Spanned<String>>,
    /// Open connections of one peer address before its longest idle one is closed.
    pub max_connections_per_peer: Option<Spanned<u64>>,
    /// Open connections in all.
    pub max_connections: Option<Spanned<u64>>,
}

pub const PERMISSIONS: [&str; 4] = ["ops.view", "ops.execute", "ops.release", "*"];
