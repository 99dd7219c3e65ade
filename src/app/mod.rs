//! The [`App`] builder: one binary that registers its tasks and middleware
//! and is, depending on how it is started, the command-line tool, the
//! supervisor (`worker` subcommand) or a worker process.

mod checked;
mod scheduler_command;
mod worker_command;

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use redis_tasks_protocol::ipc::WORKER_FD_ARG;
use redis_tasks_protocol::ipc::fork_server::FORK_SERVER_FD_ARG;
use redis_tasks_worker::{Middleware, SetupHook, TaskContext, TaskDef, TaskOptions, TaskRegistry};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cli::{
    AdminCommand, CompletionsArgs, GlobalArgs, print_error, print_stderr, run_admin,
    write_completions,
};
pub use checked::CheckedEnqueueError;
pub use worker_command::WorkerArgs;

/// A redis-tasks application: task functions and middleware, and the
/// command line that runs them.
///
/// ```no_run
/// use redis_tasks::{App, TaskContext};
///
/// fn main() -> std::process::ExitCode {
///     App::new("reports")
///         .task("send_report", |_ctx: &TaskContext, (user, to): (u64, String)| {
///             println!("report for user {user} goes to {to}");
///             Ok::<(), String>(())
///         })
///         .main()
/// }
/// ```
pub struct App {
    name: String,
    registry: TaskRegistry,
    middleware: Vec<Arc<dyn Middleware>>,
    default_config: Option<PathBuf>,
    version: Option<String>,
    about: Option<String>,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("name", &self.name)
            .field("tasks", &self.registry.names())
            .field(
                "middleware",
                &self.middleware.iter().map(|m| m.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[derive(Debug, Parser)]
#[command(
    version,
    about = "redis-tasks: background tasks in isolated worker processes"
)]
struct AppCli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: AppCommand,
}

#[derive(Debug, Subcommand)]
enum AppCommand {
    /// Run a supervisor: fetch tasks and run each in a worker process.
    Worker(WorkerArgs),
    /// Run the scheduler: enqueue the settings' schedule entries when due
    /// (one active scheduler per Redis prefix; others wait to take over).
    Scheduler(scheduler_command::SchedulerArgs),
    /// Print a shell completion script for this program.
    Completions(CompletionsArgs),
    #[command(flatten)]
    Admin(AdminCommand),
}

impl App {
    /// An application named `name` (shown by `--help` and `--version`),
    /// with no tasks yet.
    pub fn new(name: impl Into<String>) -> Self {
        App {
            name: name.into(),
            registry: TaskRegistry::new(),
            middleware: Vec::new(),
            default_config: None,
            version: None,
            about: None,
        }
    }

    /// The settings file this binary reads when neither `--config` nor
    /// `RT_SETTINGS` names one (for example `/etc/my-app/settings.toml`).
    /// Without it, a binary given no file runs on the defaults and the
    /// environment.
    pub fn settings_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.default_config = Some(path.into());
        self
    }

    /// `global` with this binary's default settings file filled in when the
    /// command line and the environment named none.
    fn with_default_config(&self, mut global: GlobalArgs) -> GlobalArgs {
        if global.config.is_none() {
            global.config = self.default_config.clone();
        }
        global
    }

    /// The application's version, shown by `--version` and `--help` (for
    /// example `env!("CARGO_PKG_VERSION")`, your own crate's version).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// One line saying what the application does, shown by `--help`.
    pub fn about(mut self, about: impl Into<String>) -> Self {
        self.about = Some(about.into());
        self
    }

    /// The command line, under the application's own name and version:
    /// `my-app 1.4.0 (redis-tasks 0.1.0)`.
    fn command_line(&self) -> clap::Command {
        let engine = concat!("redis-tasks ", env!("CARGO_PKG_VERSION"));
        let version = match &self.version {
            Some(v) => format!("{v} ({engine})"),
            None => format!("({engine})"),
        };
        let about = self.about.clone().unwrap_or_else(|| {
            format!(
                "{}: background tasks in isolated worker processes (redis-tasks)",
                self.name
            )
        });
        let mut names = self.registry.names();
        names.sort();
        let tasks = if names.is_empty() {
            "This binary registers no task functions.".to_owned()
        } else {
            format!("Task functions of this binary: {}", names.join(", "))
        };
        AppCli::command()
            .name(self.name.clone())
            .version(version)
            .about(about)
            .mut_subcommand("enqueue", |enqueue| enqueue.after_help(tasks))
    }

    /// Registers a task function under `name` with default options.
    ///
    /// The task returns `Ok(value)` for any `Serialize` value: it is stored
    /// as JSON in the task record's `result` (up to `max_result_bytes`), for
    /// [`Store::wait_for_end`](crate::Store::wait_for_end) and
    /// `task result ID`. `Ok(())` stores nothing.
    ///
    /// A returned error is recorded as its alternate text (`{:#}`), which for
    /// an `anyhow::Error` is the whole chain, "top: cause: root". For an error
    /// type with `source()`s, return `TaskError::from_chain(&e)` to keep them.
    pub fn task<A, R, E, F>(self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned,
        R: Serialize,
        E: fmt::Display,
        F: Fn(&TaskContext, A) -> Result<R, E> + Send + Sync + 'static,
    {
        self.task_with(name, TaskOptions::new(), f)
    }

    /// Registers a task function under `name` with `options`.
    pub fn task_with<A, R, E, F>(mut self, name: &str, options: TaskOptions, f: F) -> Self
    where
        A: DeserializeOwned,
        R: Serialize,
        E: fmt::Display,
        F: Fn(&TaskContext, A) -> Result<R, E> + Send + Sync + 'static,
    {
        self.registry.insert(TaskDef::new(name, options, f));
        self
    }

    /// Registers an async task function under `name` with default options
    /// (feature `async`): an `async fn(&TaskContext, A) -> Result<R, E>`
    /// or an async closure. It runs on a Tokio current-thread runtime
    /// created once in each worker process, inside the same middleware
    /// chain, timeout, panic and crash handling and isolation as a
    /// synchronous task.
    #[cfg(feature = "async")]
    pub fn task_async<A, R, E, F>(self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned,
        R: Serialize,
        E: fmt::Display,
        F: AsyncFn(&TaskContext, A) -> Result<R, E> + Send + Sync + 'static,
    {
        self.task_async_with(name, TaskOptions::new(), f)
    }

    /// Registers an async task function under `name` with `options`
    /// (feature `async`); see [`App::task_async`].
    #[cfg(feature = "async")]
    pub fn task_async_with<A, R, E, F>(mut self, name: &str, options: TaskOptions, f: F) -> Self
    where
        A: DeserializeOwned,
        R: Serialize,
        E: fmt::Display,
        F: AsyncFn(&TaskContext, A) -> Result<R, E> + Send + Sync + 'static,
    {
        self.registry.insert(TaskDef::new_async(name, options, f));
        self
    }

    /// Sets the per-process setup hook: it runs once in each worker process,
    /// before its first task (after the process applied its isolation
    /// profile), to build what the process's tasks share: a connection
    /// pool, a cache, tracing set-up. Tasks reach its value with
    /// [`TaskContext::state::<T>()`](TaskContext::state).
    ///
    /// An error (or a panic) fails the start of that worker process: the
    /// supervisor refuses to start when its first one fails, and later the
    /// task waiting for it fails with "worker failed to start: setup hook
    /// failed: <error>"; five failed starts in a row stop the supervisor.
    /// Worker processes get a scrubbed environment: read what the hook
    /// needs from files, not from the supervisor's environment variables.
    pub fn setup<T, E, F>(mut self, hook: F) -> Self
    where
        T: Send + Sync + 'static,
        E: fmt::Display,
        F: Fn() -> Result<T, E> + Send + Sync + 'static,
    {
        self.registry.set_setup(SetupHook::new(hook));
        self
    }

    /// Adds a middleware at the end of the chain (the first added is the
    /// outermost `run_task` and the last to see an outcome).
    pub fn middleware(mut self, middleware: impl Middleware) -> Self {
        self.middleware.push(Arc::new(middleware));
        self
    }

    /// The registered tasks.
    pub fn registry(&self) -> &TaskRegistry {
        &self.registry
    }

    /// The registered middleware, in registration order.
    pub fn registered_middleware(&self) -> &[Arc<dyn Middleware>] {
        &self.middleware
    }

    /// Runs the command line of this process.
    pub fn main(self) -> ExitCode {
        self.run_with_args(std::env::args_os())
    }

    /// Runs with these arguments (the first is the program name). Started
    /// by a supervisor as a worker process, it serves tasks instead.
    pub fn run_with_args(self, args: impl IntoIterator<Item = OsString>) -> ExitCode {
        let args: Vec<OsString> = args.into_iter().collect();
        if let Some(fd) = role_fd(&args, WORKER_FD_ARG) {
            return self.serve_as_worker_process(fd);
        }
        if let Some(fd) = role_fd(&args, FORK_SERVER_FD_ARG) {
            return self.serve_as_fork_server(fd);
        }
        let cli = match self
            .command_line()
            .try_get_matches_from(&args)
            .and_then(|m| AppCli::from_arg_matches(&m))
        {
            Ok(cli) => cli,
            Err(e) => {
                let _ = e.print();
                return if e.use_stderr() {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
        };
        if let AppCommand::Completions(completions) = &cli.command {
            let argv0 = args.first().map(OsString::as_os_str);
            write_completions(
                self.command_line(),
                argv0,
                completions.shell,
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        crate::logging::init(cli.global.log_format);
        let mut cli = cli;
        cli.global = self.with_default_config(cli.global);
        let result = match cli.command {
            AppCommand::Worker(args) => worker_command::run(&self, &cli.global, args),
            AppCommand::Scheduler(args) => scheduler_command::run(&self, &cli.global, args),
            AppCommand::Admin(AdminCommand::Enqueue(args)) => crate::cli::run_enqueue_checked(
                &cli.global,
                &args,
                &self.registry,
                &mut std::io::stdout().lock(),
            ),
            AppCommand::Completions(_) => Ok(()),
            AppCommand::Admin(command) => {
                run_admin(&cli.global, command, Some(&self.registry.names()))
            }
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                print_error(&e);
                ExitCode::FAILURE
            }
        }
    }

    fn serve_as_fork_server(self, fd: i32) -> ExitCode {
        let served = redis_tasks_worker::fork_server::serve_fork_server(
            &self.registry,
            &self.middleware,
            fd,
        );
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                print_stderr(&format!("redis-tasks fork server: {e}"));
                ExitCode::FAILURE
            }
        }
    }

    fn serve_as_worker_process(self, fd: i32) -> ExitCode {
        match redis_tasks_worker::process::serve(&self.registry, &self.middleware, fd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                print_stderr(&format!("redis-tasks worker process: {e}"));
                ExitCode::FAILURE
            }
        }
    }
}

/// The descriptor number in `ROLE=N` (`--redis-tasks-worker-fd=3`), when
/// the supervisor started this process in that role.
fn role_fd(args: &[OsString], role: &str) -> Option<i32> {
    let first = args.get(1)?.to_str()?;
    let value = first.strip_prefix(role)?.strip_prefix('=')?;
    value.parse().ok()
}

/// Whether a supervisor started this process as a worker process or as its
/// fork server (for programs that do more than call [`App::main`], such as
/// the quickstart example: they must hand over to `App::main` at once).
pub fn started_as_worker_process() -> bool {
    let args: Vec<OsString> = std::env::args_os().take(2).collect();
    role_fd(&args, WORKER_FD_ARG).is_some() || role_fd(&args, FORK_SERVER_FD_ARG).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_settings_file_applies_only_when_none_is_named() {
        let app = App::new("t").settings_file("/etc/t/settings.toml");
        let given = GlobalArgs {
            config: Some(PathBuf::from("/tmp/mine.toml")),
            ..GlobalArgs::default()
        };
        assert_eq!(
            app.with_default_config(given).config,
            Some(PathBuf::from("/tmp/mine.toml"))
        );
        assert_eq!(
            app.with_default_config(GlobalArgs::default()).config,
            Some(PathBuf::from("/etc/t/settings.toml"))
        );
        assert_eq!(
            App::new("u")
                .with_default_config(GlobalArgs::default())
                .config,
            None
        );
    }
}
