//! The `worker` subcommand: run a supervisor.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use std::sync::Arc;
use std::time::Duration;

use redis_tasks_supervisor::signals;
use redis_tasks_supervisor::{DEFAULT_MAX_TASKS_PER_CHILD, Reloader, SupervisorConfig};

use super::App;
use crate::cli::GlobalArgs;

/// Options of `worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Queues to take tasks from, highest priority first (default:
    /// `default`), or each as NAME=WEIGHT to take them by weight
    /// (`high=5 low=1`: low never starves).
    pub queues: Vec<String>,
    /// Number of slots, each running one task at a time in its own worker
    /// process (default: the number of CPUs).
    #[arg(short, long)]
    pub concurrency: Option<usize>,
    /// Stop once the queues are empty and every slot is idle.
    #[arg(short, long)]
    pub burst: bool,
    /// How `info` names this supervisor (default: hostname.pid).
    #[arg(long)]
    pub description: Option<String>,
    /// Tasks a worker process runs before it is replaced; 1 gives every task
    /// a fresh process, as the Python redis-tasks library this one follows does.
    #[arg(long, default_value_t = DEFAULT_MAX_TASKS_PER_CHILD)]
    pub max_tasks_per_child: u64,
    /// Names this supervisor on its host; a restart under the same name
    /// recovers the tasks its previous run left behind at once (default: the
    /// settings file's name without extension, else `default`).
    #[arg(long)]
    pub instance: Option<String>,
    /// Seconds a graceful shutdown (SIGTERM, SIGINT) lets running tasks
    /// finish before it interrupts them (default: the `drain_timeout`
    /// setting, 0).
    #[arg(long, value_name = "SECS")]
    pub drain_timeout: Option<u64>,
    /// Start worker processes from this program instead of this binary (a
    /// wrapper that ends by exec-ing this binary with the same arguments).
    #[arg(long, value_name = "PATH")]
    pub worker_exe: Option<PathBuf>,
    /// Also run the scheduler, on a thread of this supervisor (one active
    /// scheduler per Redis prefix; see docs/scheduler.md).
    #[arg(long)]
    pub scheduler: bool,
    /// Serve Prometheus metrics on http://ADDR/metrics (default: the
    /// `metrics_addr` setting; none). See docs/observability.md.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

pub(super) fn run(app: &App, global: &GlobalArgs, args: WorkerArgs) -> anyhow::Result<()> {
    // First, before any thread: every signal of the table works from now on.
    let signals = signals::listen().context("cannot install signal handlers")?;
    let settings = global.settings()?;
    settings.validate_tasks(&app.registry.names())?;
    if app.registry.is_empty() {
        anyhow::bail!(
            "this binary registers no task functions; build your own with redis_tasks::App (see examples/quickstart.rs)"
        );
    }
    let instance = args.instance.unwrap_or_else(|| {
        settings
            .source
            .as_ref()
            .and_then(|p| p.file_stem())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "default".to_owned())
    });
    redis_tasks_config::QueueOrder::parse(&args.queues)
        .map_err(|problem| anyhow::anyhow!("worker QUEUE...: {problem}"))?;
    let mut config = SupervisorConfig::new(settings, args.queues);
    let reload_args = global.clone();
    let tasks = app.registry.names();
    config.reload = Some(Reloader(Arc::new(move || {
        let settings = reload_args.settings().map_err(|e| format!("{e:#}"))?;
        settings.validate_tasks(&tasks).map_err(|e| e.to_string())?;
        Ok(settings)
    })));
    if let Some(secs) = args.drain_timeout {
        config.drain_timeout = Duration::from_secs(secs);
    }
    if let Some(n) = args.concurrency {
        anyhow::ensure!(n > 0, "--concurrency must be at least 1");
        config.concurrency = n;
    }
    config.burst = args.burst;
    if let Some(description) = args.description {
        config.description = description;
    }
    anyhow::ensure!(
        args.max_tasks_per_child > 0,
        "--max-tasks-per-child must be at least 1"
    );
    config.max_tasks_per_child = args.max_tasks_per_child;
    config.instance = instance;
    config.worker_exe = args.worker_exe;
    config.scheduler = args.scheduler;
    config.version = app.version.clone();
    if let Some(addr) = args.metrics_addr {
        config.metrics_addr = Some(addr);
    }
    let result = redis_tasks_supervisor::run(
        config,
        app.registry.clone(),
        &app.middleware,
        &signals.requests,
    );
    result.context("supervisor")?;
    Ok(())
}
