//! The admin command line: look at and manage queues, tasks and workers,
//! with no task code needed.
//!
//! The subcommands are a clap [`Subcommand`] enum, [`AdminCommand`], so the
//! `redis-tasks` binary and a user's own binary (through
//! [`App`](crate::App), which adds `worker`) offer the same commands. Output
//! goes to stdout; errors come back as `anyhow` errors for the binary to
//! print as one line.
//!
//! # Layout
//!
//! - this file: global flags, the command enum, dispatch.
//! - `info`: the `info` overview (human and JSON).
//! - `tasks`: `enqueue`, `task show`, `task cancel`, and the JSON shape of a
//!   task record.
//! - `failed`: `failed list` and `failed requeue`.
//! - `queues`: `empty`, and `queue` (list, pause, resume, limit).
//! - `results`: `task result`.
//! - `style`: colour on a terminal.
//! - [`schedule`]: `schedule next`, `schedule pause|resume|run`.
//! - `supervisors`: `supervisor list|quiet|stop|scale`.
//! - `graph`: `graph show`.
//! - `dashboard`: `dashboard`, the web dashboard (the `redis-tasks-dashboard`
//!   crate).
//! - [`completions`]: `completions bash|zsh|fish` (handled by each binary,
//!   which knows its whole command line).

mod canceled;
pub mod completions;
#[cfg(feature = "dashboard")]
mod dashboard;
mod enqueue_input;
mod expired;
mod failed;
mod graph;
mod info;
mod queues;
mod results;
pub mod schedule;
mod style;
mod supervisors;
mod task_logs;
mod tasks;

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use redis_tasks_config::Settings;
use redis_tasks_store::Store;

pub use canceled::{CanceledAction, CanceledCommand};
pub use completions::{CompletionsArgs, write_completions};
#[cfg(feature = "dashboard")]
pub use dashboard::DashboardArgs;
pub use expired::{ExpiredAction, ExpiredCommand};
pub use failed::{FailedAction, FailedCommand, FailedListArgs, FailedRequeueArgs};
pub use graph::{GraphAction, GraphCommand, GraphShowArgs, graph_json};
pub use info::InfoArgs;
pub use queues::{EmptyArgs, LimitArgs, QueueAction, QueueCommand, QueueListArgs, QueueNameArgs};
pub use results::TaskResultArgs;
pub use schedule::ScheduleCommand;
pub use supervisors::{
    SupervisorAction, SupervisorCommandArgs, SupervisorIdArgs, SupervisorListArgs,
    SupervisorScaleArgs,
};
pub use tasks::{
    EnqueueArgs, TaskAction, TaskCancelArgs, TaskCommand, TaskIdArgs, TaskShowArgs, task_json,
};

/// Flags every subcommand accepts.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Settings file (TOML).
    #[arg(long, global = true, value_name = "PATH", env = "RT_SETTINGS")]
    pub config: Option<PathBuf>,
    /// Redis URL, overriding the settings and REDIS_URL.
    #[arg(long, global = true, value_name = "URL")]
    pub redis_url: Option<String>,
    /// Log line format on stderr: `text` (for people) or `json` (one object
    /// per line, for journald and log collectors).
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "FORMAT",
        env = "RT_LOG_FORMAT",
        default_value_t
    )]
    pub log_format: crate::LogFormat,
}

impl GlobalArgs {
    /// The settings: defaults, then the file, then the environment, then
    /// `--redis-url`.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let mut settings = Settings::load(self.config.as_deref())?;
        if let Some(url) = &self.redis_url {
            // Every user of the host can read a command line
            // (/proc/<pid>/cmdline), a task of a worker process included.
            anyhow::ensure!(
                !redis_tasks_config::settings::url_has_password(url),
                "--redis-url must not carry a password: every user of this host can read a \
                 command line; set REDIS_URL, or redis_url in the settings file, or put the \
                 password in a file named by redis_password_file (RT_REDIS_PASSWORD_FILE)"
            );
            redis_tasks_config::settings::check_redis_url(url)
                .map_err(|problem| anyhow::anyhow!("--redis-url: {problem}"))?;
            settings.redis_url = url.clone();
        }
        Ok(settings)
    }

    /// A store configured from [`settings`](Self::settings).
    pub fn store(&self) -> anyhow::Result<Store> {
        let settings = self.settings()?;
        Ok(Store::from_settings(&settings)?)
    }
}

/// The admin subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Show queues (with their length), workers and the registries.
    Info(InfoArgs),
    /// Remove every task from queues (their records too).
    Empty(EmptyArgs),
    /// List queues; pause, resume and limit them fleet-wide.
    Queue(QueueCommand),
    /// Enqueue a task; prints its id.
    Enqueue(Box<EnqueueArgs>),
    /// Show one task, read its result, or cancel it.
    Task(TaskCommand),
    /// List or requeue failed tasks.
    Failed(FailedCommand),
    /// List expired tasks (their expiry passed before they started).
    Expired(ExpiredCommand),
    /// List canceled tasks (canceled while queued, scheduled or running).
    Canceled(CanceledCommand),
    /// Check schedules before putting them in the settings file; pause,
    /// resume or run an entry of the running scheduler.
    Schedule(ScheduleCommand),
    /// Show task graphs.
    Graph(GraphCommand),
    /// List running supervisors; make one quiet, stop it or scale it,
    /// through Redis.
    Supervisor(SupervisorCommandArgs),
    /// Serve the web dashboard: queues, workers, failed tasks and actions.
    #[cfg(feature = "dashboard")]
    Dashboard(DashboardArgs),
}

/// Runs an admin subcommand, printing to stdout.
///
/// With `known_tasks` (a binary that registers task functions), `enqueue`
/// refuses names not in the list; the admin binary passes `None`.
pub fn run_admin(
    global: &GlobalArgs,
    cmd: AdminCommand,
    known_tasks: Option<&[String]>,
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    run_admin_to(global, cmd, known_tasks, &mut out)
}

/// [`run_admin`] writing to `out`.
pub fn run_admin_to(
    global: &GlobalArgs,
    cmd: AdminCommand,
    known_tasks: Option<&[String]>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if let AdminCommand::Schedule(mut cmd) = cmd {
        let settings = global.settings()?;
        if cmd.needs_redis() {
            let store = Store::from_settings(&settings)?;
            store.check_schema()?;
            let configured: Vec<String> = settings.schedule.keys().cloned().collect();
            return schedule::run_control(&store, &configured, cmd, out);
        }
        cmd.default_timezone(&settings.timezone);
        return schedule::run_schedule(cmd, out);
    }
    #[cfg(feature = "dashboard")]
    if let AdminCommand::Dashboard(args) = &cmd {
        let settings = global.settings()?;
        let store = Store::from_settings(&settings)?;
        store.check_schema()?;
        return dashboard::run(store, settings, args);
    }
    let store = global.store()?;
    store.check_schema()?;
    match cmd {
        AdminCommand::Info(args) => info::run(&store, &args, out),
        AdminCommand::Empty(args) => queues::empty(&store, &args, out),
        AdminCommand::Queue(cmd) => queues::queue(&store, cmd, out),
        AdminCommand::Enqueue(args) => tasks::enqueue(&store, &args, known_tasks, out),
        AdminCommand::Task(cmd) => tasks::run(&store, cmd, out),
        AdminCommand::Failed(cmd) => failed::run(&store, cmd, out),
        AdminCommand::Expired(cmd) => expired::run(&store, cmd, out),
        AdminCommand::Canceled(cmd) => canceled::run(&store, cmd, out),
        AdminCommand::Graph(cmd) => graph::run(&store, cmd, out),
        AdminCommand::Supervisor(cmd) => supervisors::run(&store, cmd, out),
        // Handled above.
        AdminCommand::Schedule(_) => Ok(()),
        #[cfg(feature = "dashboard")]
        AdminCommand::Dashboard(_) => Ok(()),
    }
}

/// `enqueue` in a binary that registers task functions: the task must be
/// one of `registry`'s and its arguments must fit the task's argument type
/// (checked before anything is written).
pub fn run_enqueue_checked(
    global: &GlobalArgs,
    args: &EnqueueArgs,
    registry: &redis_tasks_worker::TaskRegistry,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let store = global.store()?;
    store.check_schema()?;
    tasks::enqueue_checked(&store, args, None, Some(registry), out)
}

/// An error as the binaries print it: `error: <top>`, then one
/// `  caused by: <cause>` line per further cause of its chain. Each message
/// is folded to one line; a cause is skipped when it is empty or the line
/// before already ends with its text (an error that prints its own source).
pub fn error_report(e: &anyhow::Error) -> String {
    let mut report = String::new();
    let mut previous = String::new();
    for cause in e.chain() {
        let text = one_line(&cause.to_string());
        if report.is_empty() {
            report = format!("error: {text}");
        } else if !text.is_empty() && !previous.ends_with(&text) {
            report.push_str("\n  caused by: ");
            report.push_str(&text);
        } else {
            continue;
        }
        previous = text;
    }
    report
}

/// Prints [`error_report`] on stderr. A stderr that cannot be written (a
/// closed pipe) is ignored: the exit status still tells the failure.
pub fn print_error(e: &anyhow::Error) {
    print_stderr(&error_report(e));
}

/// Writes `text` and a newline to stderr, ignoring write errors, unlike
/// `eprintln!`, which panics when stderr is a closed pipe.
pub fn print_stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

/// Folds a message to one line: trimmed lines joined with spaces.
pub fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_report_has_one_line_per_distinct_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = anyhow::Error::new(io)
            .context("reading x: gone")
            .context("gone")
            .context("start\nup");
        assert_eq!(
            error_report(&e),
            "error: start up\n  caused by: gone\n  caused by: reading x: gone"
        );
    }

    #[test]
    fn an_error_without_causes_is_one_line() {
        let e = anyhow::anyhow!("task x not found");
        assert_eq!(error_report(&e), "error: task x not found");
    }
}
