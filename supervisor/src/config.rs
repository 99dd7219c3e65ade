//! What one supervisor is asked to do.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use redis_tasks_config::{QueueOrder, Settings};

/// Reads the settings again (SIGHUP); an error keeps the old ones.
#[derive(Clone)]
pub struct Reloader(pub Arc<dyn Fn() -> Result<Settings, String> + Send + Sync>);

impl fmt::Debug for Reloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reloader")
    }
}

/// A supervisor's configuration: settings plus its command-line choices.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// Queue names in priority order: a slot always takes from the first
    /// non-empty one, unless `weights` are set.
    pub queues: Vec<String>,
    /// One weight per queue (`worker high=5 low=1`): each fetch puts a
    /// queue first with a chance proportional to its weight. Empty: strict
    /// priority.
    pub weights: Vec<u32>,
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
    /// How long a graceful shutdown lets running tasks finish before it
    /// interrupts them.
    pub drain_timeout: Duration,
    /// The binary started as worker process (default: this one).
    pub worker_exe: Option<PathBuf>,
    /// Also run the scheduler, on a thread the control loop owns
    /// (`worker --scheduler`).
    pub scheduler: bool,
    /// How SIGHUP reads the settings again; `None`: SIGHUP only replaces
    /// the worker processes.
    pub reload: Option<Reloader>,
    /// Where to serve Prometheus metrics (`/metrics`); `None`: nowhere.
    /// Defaults to the `metrics_addr` setting; read once at start-up.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The application's version (`App::version`), reported to Redis with
    /// redis-tasks' own.
    pub version: Option<String>,
    /// The settings in effect.
    pub settings: Settings,
}

/// The default of `--max-tasks-per-child`. Re-using a process avoids an
/// exec and a handshake per task; a bound still returns leaked memory to the
/// system now and then. `docs/performance.md` records the measurements.
pub const DEFAULT_MAX_TASKS_PER_CHILD: u64 = 1000;

impl SupervisorConfig {
    /// A configuration for `queues` (empty: the `worker_queues` setting,
    /// else `default`) with everything else from `settings` or defaults.
    pub fn new(settings: Settings, queues: Vec<String>) -> Self {
        let host = hostname();
        let specs = if !queues.is_empty() {
            queues
        } else if !settings.worker_queues.is_empty() {
            settings.worker_queues.clone()
        } else {
            vec!["default".to_owned()]
        };
        let (queues, weights) = split_weights(specs);
        let concurrency = settings
            .worker_concurrency
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
        SupervisorConfig {
            queues,
            weights,
            concurrency,
            burst: false,
            description: format!("{host}.{}", std::process::id()),
            instance: "default".to_owned(),
            max_tasks_per_child: DEFAULT_MAX_TASKS_PER_CHILD,
            drain_timeout: Duration::from_secs(
                settings
                    .drain_timeout
                    .unwrap_or(redis_tasks_config::DEFAULT_DRAIN_TIMEOUT),
            ),
            worker_exe: None,
            scheduler: false,
            reload: None,
            metrics_addr: settings.metrics_addr,
            version: None,
            settings,
        }
    }

    /// This configuration with reloaded `settings`: the values the settings
    /// set (queues, concurrency, the drain timeout, timeouts,
    /// middleware...) replace the current ones; command-line choices the
    /// settings leave unset stay.
    pub fn reloaded(&self, settings: Settings) -> Self {
        let mut next = self.clone();
        if !settings.worker_queues.is_empty() {
            (next.queues, next.weights) = split_weights(settings.worker_queues.clone());
        }
        if let Some(n) = settings
            .worker_concurrency
            .and_then(|n| usize::try_from(n).ok())
        {
            next.concurrency = n;
        }
        if let Some(secs) = settings.drain_timeout {
            next.drain_timeout = Duration::from_secs(secs);
        }
        next.settings = settings;
        next
    }

    /// The queues in the order of one fetch: as given for strict
    /// priority, else drawn by weight with `random`.
    pub(crate) fn fetch_order(&self, random: impl FnMut() -> u64) -> Vec<String> {
        if self.weights.is_empty() {
            return self.queues.clone();
        }
        QueueOrder::parse(&self.specs())
            .map(|order| order.draw(random))
            .unwrap_or_else(|_| self.queues.clone())
    }

    /// The queues as `name=weight` (or plain names).
    fn specs(&self) -> Vec<String> {
        if self.weights.is_empty() {
            return self.queues.clone();
        }
        self.queues
            .iter()
            .zip(&self.weights)
            .map(|(q, w)| format!("{q}={w}"))
            .collect()
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

/// Queue names and weights from `name` / `name=weight` specs (checked
/// where they were read: the settings, the command line); specs that do
/// not read are taken as plain names.
fn split_weights(specs: Vec<String>) -> (Vec<String>, Vec<u32>) {
    match QueueOrder::parse(&specs) {
        Ok(order) => (order.names().to_vec(), order.weights().to_vec()),
        Err(_) => (specs, Vec::new()),
    }
}

/// This host's name, as `info` shows it.
pub(crate) fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_at_start_and_a_reload_applies_what_the_file_sets() {
        let settings = Settings {
            worker_queues: vec!["from_file".into()],
            worker_concurrency: Some(3),
            ..Settings::default()
        };
        let config = SupervisorConfig::new(settings.clone(), vec!["from_flag".into()]);
        assert_eq!(config.queues, ["from_flag"]);
        assert_eq!(config.concurrency, 3);
        let mut started = config.clone();
        started.concurrency = 8;
        started.drain_timeout = Duration::from_secs(30);
        let reloaded = started.reloaded(Settings::default());
        assert_eq!(reloaded.queues, ["from_flag"]);
        assert_eq!(reloaded.concurrency, 8);
        assert_eq!(reloaded.drain_timeout, Duration::from_secs(30));
        let reloaded = started.reloaded(settings);
        assert_eq!(reloaded.queues, ["from_file"]);
        assert_eq!(reloaded.concurrency, 3);
        // A file that turns draining off is obeyed at reload, too.
        let off = Settings {
            drain_timeout: Some(0),
            ..Settings::default()
        };
        assert_eq!(started.reloaded(off).drain_timeout, Duration::ZERO);
    }

    #[test]
    fn a_shutdown_drains_for_25_seconds_unless_settings_say_otherwise() {
        let config = SupervisorConfig::new(Settings::default(), Vec::new());
        assert_eq!(config.drain_timeout, Duration::from_secs(25));
    }
}
