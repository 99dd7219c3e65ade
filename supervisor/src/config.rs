//! What one supervisor is asked to do.

use std::path::PathBuf;
use std::time::Duration;

use redis_tasks_protocol::Settings;

/// A supervisor's configuration: settings plus its command-line choices.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// Queues in priority order: a slot always takes from the first
    /// non-empty one.
    pub queues: Vec<String>,
    /// Number of slots (worker processes running at once).
    pub concurrency: usize,
    /// Stop once the queues are empty and every slot is idle.
    pub burst: bool,
    /// Shown by `info` (default `hostname.pid`).
    pub description: String,
    /// Names this supervisor's place on its host, so that a restart finds
    /// and recovers the tasks of its previous incarnation at once.
    pub instance: String,
    /// Tasks a worker process runs before it is replaced; 1 gives every
    /// task a fresh process.
    pub max_tasks_per_child: u64,
    /// The binary started as worker process (default: this one).
    pub worker_exe: Option<PathBuf>,
    /// The settings in effect.
    pub settings: Settings,
}

/// The default of `--max-tasks-per-child`. Re-using a process avoids an
/// exec per task; a bound still returns leaked memory to the system now and
/// then. `docs/architecture.md` records the measurements behind it.
pub const DEFAULT_MAX_TASKS_PER_CHILD: u64 = 1000;

impl SupervisorConfig {
    /// A configuration for `queues` with defaults for everything else.
    pub fn new(settings: Settings, queues: Vec<String>) -> Self {
        let host = hostname();
        SupervisorConfig {
            queues: if queues.is_empty() {
                vec!["default".to_owned()]
            } else {
                queues
            },
            concurrency: std::thread::available_parallelism().map_or(1, usize::from),
            burst: false,
            description: format!("{host}.{}", std::process::id()),
            instance: "default".to_owned(),
            max_tasks_per_child: DEFAULT_MAX_TASKS_PER_CHILD,
            worker_exe: None,
            settings,
        }
    }

    pub(crate) fn heartbeat_freq(&self) -> Duration {
        Duration::from_secs(self.settings.worker_heartbeat_freq)
    }

    pub(crate) fn heartbeat_timeout(&self) -> Duration {
        Duration::from_secs(self.settings.worker_heartbeat_timeout)
    }

    pub(crate) fn maintenance_freq(&self) -> Duration {
        Duration::from_secs(self.settings.maintenance_freq)
    }

    pub(crate) fn default_timeout(&self) -> Duration {
        Duration::from_secs(self.settings.default_task_timeout)
    }
}

/// This host's name, as `info` shows it.
pub fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}
