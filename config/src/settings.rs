//! Settings: the defaults of the original library, a TOML file over them, and
//! environment variables over that.
//!
//! Precedence, lowest first: [`Settings::default`], the settings file (path
//! given by `--config`, else `RT_SETTINGS`, else none), the environment
//! (`REDIS_URL` and `RT_<SETTING>`). Command-line flags are applied by the
//! CLI afterwards. Unknown keys, at any level, and bad values are errors that
//! name the key and where it came from, so a typo stops the program at start-up
//! instead of being silently ignored.
//!
//! # Layout
//!
//! - [`error`]: [`SettingsError`] and [`Origin`].
//! - `values`: one reader per scalar setting, shared by file and environment.
//! - `file`: the top level of the TOML file.
//! - `entries`: `[schedule.ID]` tables.
//! - [`isolation`]: isolation profiles of untrusted tasks.
//! - `queues`: `[queues.NAME]` tables (per-queue settings).
//! - `env`: environment overrides.

pub mod error;
pub mod isolation;

mod entries;
mod env;
mod file;
mod queues;
mod redis;
mod tasks;
mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::tz::TimeZone;

use crate::schedule::{ScheduleEntry, parse_time_zone};

pub use error::{Origin, SettingsError};
pub use isolation::Isolation;
pub use queues::QueueSettings;
pub use redis::{DEFAULT_WAIT_TIMEOUT_MS, RedisSettings};
pub use tasks::TaskSettings;

/// Seconds a graceful shutdown lets running tasks finish before it
/// interrupts them, unless settings say otherwise: Ctrl-C and `systemctl
/// stop` wait for short tasks, as Sidekiq (25 s) and Celery do; 0 restores
/// the Python original's immediate interruption.
pub const DEFAULT_DRAIN_TIMEOUT: u64 = 25;

/// KiB of a task's own output kept with it unless settings say otherwise
/// (`task_log_kib`).
pub const DEFAULT_TASK_LOG_KIB: u64 = 64;

/// The most `task_log_kib` may ask for (16 MiB per task): the output is
/// held in the supervisor's memory while the task runs, and in Redis after.
pub const MAX_TASK_LOG_KIB: u64 = 16 * 1024;

/// Every setting, after defaults, file and environment were applied.
///
/// All durations are in whole seconds; the `Duration` accessors below convert.
#[derive(Clone, PartialEq)]
pub struct Settings {
    /// Where Redis is: a `redis://`, `rediss://` or `unix://` URL, or
    /// `redis+sentinel://host:port[,host:port...]/MASTER[/DB]` (`rediss+sentinel://` for TLS).
    pub redis_url: String,
    /// A file holding the Redis password (its first line), used instead of
    /// a password in `redis_url`; read each time a store is opened, so at
    /// start-up and at every reload.
    pub redis_password_file: Option<PathBuf>,
    /// The other connection settings: ACL user, TLS, Sentinel, durable mode.
    pub redis: RedisSettings,
    /// Prefix of every Redis key, so several deployments can share a server.
    pub redis_prefix: String,
    /// IANA time zone that schedules are written in.
    pub timezone: String,
    /// Seconds a task may run when its function sets no timeout.
    pub default_task_timeout: u64,
    /// The longest timeout any task gets, in seconds: a longer one asked
    /// by a producer is refused at enqueue, and every timeout (a record's,
    /// a task function's, `default_task_timeout`) is capped at it when a
    /// task starts.
    pub max_task_timeout: u64,
    /// Seconds finished and failed tasks are kept before they are deleted.
    pub expiring_registries_ttl: u64,
    /// Seconds a dead worker's record is kept for `info`.
    pub dead_worker_ttl: u64,
    /// Seconds between heartbeats of each slot.
    pub worker_heartbeat_freq: u64,
    /// Seconds without a heartbeat after which a slot counts as dead; always
    /// greater than `worker_heartbeat_freq`.
    pub worker_heartbeat_timeout: u64,
    /// Seconds between maintenance passes.
    pub maintenance_freq: u64,
    /// Names of registered middleware to enable, in chain order.
    pub middleware: Vec<String>,
    /// Scheduled tasks by entry id.
    pub schedule: BTreeMap<String, ScheduleEntry>,
    /// Queue scheduled tasks go to unless their entry names one.
    pub scheduler_queue: String,
    /// Seconds of missed runs the scheduler still catches up after downtime.
    pub scheduler_max_catchup: u64,
    /// Largest JSON encoding of a task's arguments accepted at enqueue, in
    /// bytes.
    pub max_args_bytes: u64,
    /// How many times a reentrant task interrupted by a crash is requeued
    /// before it fails for good.
    pub max_aborted_runs: u32,
    /// How many tasks one run of a task may enqueue from inside
    /// (`TaskContext::enqueue`, both modes together).
    pub max_children_per_task: u32,
    /// Slots of a supervisor (`worker --concurrency` wins at start-up; a
    /// reload applies the file's value). `None`: one per CPU.
    pub worker_concurrency: Option<u64>,
    /// Queues a supervisor listens on, highest priority first (`worker
    /// QUEUE...` wins at start-up; a reload applies the file's list). Empty:
    /// `default`.
    pub worker_queues: Vec<String>,
    /// Seconds a graceful shutdown lets running tasks finish before it
    /// interrupts them (`worker --drain-timeout` wins at start-up; a reload
    /// applies the file's value). `None`: [`DEFAULT_DRAIN_TIMEOUT`].
    pub drain_timeout: Option<u64>,
    /// The first uid of `user = "dynamic"` profiles: slot N of a
    /// supervisor runs such tasks as uid `dynamic_user_base + N`. Give each
    /// supervisor of a host its own base.
    pub dynamic_user_base: u32,
    /// Run each worker process started by `exec` in a cgroup (v2) of its
    /// own where the host allows it (see docs/security.md).
    pub worker_cgroups: bool,
    /// Where a supervisor serves its Prometheus metrics (`/metrics`);
    /// `None`: nowhere (`worker --metrics-addr` wins at start-up).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where a supervisor built with the `sentry` feature reports failed
    /// endings (a Sentry DSN); also read from `SENTRY_DSN`. `None`: nowhere.
    pub sentry_dsn: Option<String>,
    /// Where a supervisor built with the `otlp` feature exports the spans
    /// of traced tasks (an OTLP/HTTP base URL, `/v1/traces` is added);
    /// also read from `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub otlp_endpoint: Option<String>,
    /// Write a task's arguments (its call text) in the supervisor's end
    /// lines. Off: arguments may hold secrets, and logs go to places
    /// (journald, collectors) with wider readers than Redis.
    pub log_task_args: bool,
    /// KiB of a task's own output (its stdout and stderr together) kept
    /// with the task: the last this many, the older bytes dropped. `0`:
    /// nothing is kept.
    pub task_log_kib: u64,
    /// Write each line a task prints to the supervisor's log too, prefixed
    /// with the task's id.
    pub task_output_to_log: bool,
    /// Per-queue settings (`[queues.NAME]` tables), by queue name.
    pub queues: BTreeMap<String, QueueSettings>,
    /// Per-task-function settings (`[tasks.NAME]` tables): flow limits.
    pub tasks: BTreeMap<String, TaskSettings>,
    /// Largest JSON encoding of a task's return value that is stored as
    /// its result, in bytes; a larger one fails the task.
    pub max_result_bytes: u64,
    /// The settings file these came from, if any.
    pub source: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            redis_password_file: None,
            redis: RedisSettings::default(),
            redis_prefix: "redis_tasks".to_owned(),
            timezone: "UTC".to_owned(),
            default_task_timeout: 86_400,
            max_task_timeout: 604_800,
            expiring_registries_ttl: 604_800,
            dead_worker_ttl: 3_600,
            worker_heartbeat_freq: 10,
            worker_heartbeat_timeout: 60,
            maintenance_freq: 60,
            middleware: Vec::new(),
            worker_concurrency: None,
            worker_queues: Vec::new(),
            drain_timeout: None,
            dynamic_user_base: 61_184,
            worker_cgroups: true,
            metrics_addr: None,
            sentry_dsn: None,
            otlp_endpoint: None,
            log_task_args: false,
            task_log_kib: DEFAULT_TASK_LOG_KIB,
            task_output_to_log: true,
            queues: BTreeMap::new(),
            tasks: BTreeMap::new(),
            schedule: BTreeMap::new(),
            scheduler_queue: "default".to_owned(),
            scheduler_max_catchup: 3_600,
            max_args_bytes: 1_048_576,
            max_aborted_runs: 3,
            max_children_per_task: 1_000,
            max_result_bytes: 1_048_576,
            source: None,
        }
    }
}

impl Settings {
    /// Loads settings as a program does at start-up: the file at `config`,
    /// else the one named by `RT_SETTINGS`, else defaults only; then the
    /// overrides from the process environment. An `RT_` variable that names
    /// no setting is an error ([`Settings::check_env_names`]).
    pub fn load(config: Option<&Path>) -> Result<Settings, SettingsError> {
        Settings::check_env_names(
            std::env::vars_os().filter_map(|(name, _)| name.into_string().ok()),
        )?;
        Settings::load_with_env(config, &|name| match std::env::var(name) {
            Ok(value) => Some(value),
            Err(std::env::VarError::NotPresent) => None,
            // Passed on so that the check of the value reports it.
            Err(std::env::VarError::NotUnicode(raw)) => Some(raw.to_string_lossy().into_owned()),
        })
    }

    /// Refuses the `RT_` variables among `names` that name no setting, all
    /// at once, with a suggestion for the first (`RT_WORKER_CONCURENCY`:
    /// did you mean `RT_WORKER_CONCURRENCY`?). Other names are passed over.
    pub fn check_env_names(names: impl IntoIterator<Item = String>) -> Result<(), SettingsError> {
        env::check_names(names)
    }

    /// Like [`Settings::load`], reading environment variables through `env`
    /// (which returns `None` for an unset variable).
    pub fn load_with_env(
        config: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, SettingsError> {
        let path = config
            .map(Path::to_path_buf)
            .or_else(|| env::lookup(env, env::SETTINGS_PATH_VAR).map(PathBuf::from));
        let mut draft = Draft::default();
        if let Some(path) = path {
            let text = std::fs::read_to_string(&path).map_err(|error| SettingsError::Read {
                path: path.clone(),
                error,
            })?;
            file::apply_file(&mut draft, &text, &Origin::File(path.clone()))?;
            draft.settings.source = Some(path);
        }
        env::apply_env(&mut draft, env)?;
        draft.finish()
    }

    /// Reads settings from TOML text over the defaults, without looking at
    /// the environment. `source` is the file the text came from, used in
    /// error messages and kept in [`Settings::source`].
    pub fn from_toml_str(text: &str, source: Option<&Path>) -> Result<Settings, SettingsError> {
        let origin = source.map_or(Origin::Text, |path| Origin::File(path.to_path_buf()));
        let mut draft = Draft::default();
        file::apply_file(&mut draft, text, &origin)?;
        draft.settings.source = source.map(Path::to_path_buf);
        draft.finish()
    }

    /// The time zone schedules are written in. The name was checked when the
    /// settings were loaded; if the field was changed to an unknown name
    /// since, this falls back to UTC.
    pub fn timezone(&self) -> TimeZone {
        parse_time_zone(&self.timezone).unwrap_or(TimeZone::UTC)
    }

    /// `worker_heartbeat_freq` as a duration.
    pub fn heartbeat_freq(&self) -> Duration {
        Duration::from_secs(self.worker_heartbeat_freq)
    }

    /// `worker_heartbeat_timeout` as a duration.
    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_secs(self.worker_heartbeat_timeout)
    }

    /// `max_task_timeout` as a duration.
    pub fn max_task_timeout(&self) -> Duration {
        Duration::from_secs(self.max_task_timeout)
    }

    /// `default_task_timeout` as a duration.
    pub fn task_timeout(&self) -> Duration {
        Duration::from_secs(self.default_task_timeout)
    }

    /// `expiring_registries_ttl` as a duration.
    pub fn registries_ttl(&self) -> Duration {
        Duration::from_secs(self.expiring_registries_ttl)
    }

    /// `dead_worker_ttl` as a duration.
    pub fn dead_worker_expiry(&self) -> Duration {
        Duration::from_secs(self.dead_worker_ttl)
    }

    /// `maintenance_freq` as a duration.
    pub fn maintenance_interval(&self) -> Duration {
        Duration::from_secs(self.maintenance_freq)
    }

    /// `scheduler_max_catchup` as a duration.
    pub fn scheduler_catchup(&self) -> Duration {
        Duration::from_secs(self.scheduler_max_catchup)
    }

    /// The isolation profile of `queue`'s table (unrestricted when the
    /// queue has none).
    pub fn isolation_of(&self, queue: &str) -> Isolation {
        self.queues
            .get(queue)
            .map(|q| q.isolation.clone())
            .unwrap_or_default()
    }

    /// Rejects schedule entries whose task is not in `known` (the task
    /// functions the running binary registered). Call it at start-up when
    /// the binary knows its tasks.
    pub fn validate_tasks(&self, known: &[String]) -> Result<(), SettingsError> {
        let unknown = self
            .schedule
            .iter()
            .find(|(_, entry)| !known.contains(&entry.task));
        let Some((id, entry)) = unknown else {
            return Ok(());
        };
        let listed = if known.is_empty() {
            "no tasks are registered".to_owned()
        } else {
            let mut names: Vec<&str> = known.iter().map(String::as_str).collect();
            names.sort_unstable();
            format!("registered tasks: {}", names.join(", "))
        };
        Err(SettingsError::BadValue {
            origin: self.source.clone().map_or(Origin::Text, Origin::File),
            key: format!("schedule.{id}.task"),
            problem: format!("unknown task {:?} ({listed})", entry.task),
        })
    }
}

impl fmt::Debug for Settings {
    /// Like a derived `Debug`, with the password of `redis_url` hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("redis_url", &redact_password(&self.redis_url))
            .field("redis_password_file", &self.redis_password_file)
            .field("redis", &self.redis)
            .field("redis_prefix", &self.redis_prefix)
            .field("timezone", &self.timezone)
            .field("default_task_timeout", &self.default_task_timeout)
            .field("max_task_timeout", &self.max_task_timeout)
            .field("expiring_registries_ttl", &self.expiring_registries_ttl)
            .field("dead_worker_ttl", &self.dead_worker_ttl)
            .field("worker_heartbeat_freq", &self.worker_heartbeat_freq)
            .field("worker_heartbeat_timeout", &self.worker_heartbeat_timeout)
            .field("maintenance_freq", &self.maintenance_freq)
            .field("middleware", &self.middleware)
            .field("worker_concurrency", &self.worker_concurrency)
            .field("worker_queues", &self.worker_queues)
            .field("drain_timeout", &self.drain_timeout)
            .field("dynamic_user_base", &self.dynamic_user_base)
            .field("worker_cgroups", &self.worker_cgroups)
            .field("metrics_addr", &self.metrics_addr)
            .field("sentry_dsn", &self.sentry_dsn.as_ref().map(|_| "(set)"))
            .field("otlp_endpoint", &self.otlp_endpoint)
            .field("log_task_args", &self.log_task_args)
            .field("task_log_kib", &self.task_log_kib)
            .field("task_output_to_log", &self.task_output_to_log)
            .field("queues", &self.queues)
            .field("tasks", &self.tasks)
            .field("schedule", &self.schedule)
            .field("scheduler_queue", &self.scheduler_queue)
            .field("scheduler_max_catchup", &self.scheduler_max_catchup)
            .field("max_args_bytes", &self.max_args_bytes)
            .field("max_aborted_runs", &self.max_aborted_runs)
            .field("max_children_per_task", &self.max_children_per_task)
            .field("max_result_bytes", &self.max_result_bytes)
            .field("source", &self.source)
            .finish()
    }
}

/// Checks a Redis URL given outside the settings (a `--redis-url` flag) the
/// way a settings file's `redis_url` is checked, with the same words.
pub fn check_redis_url(url: &str) -> Result<(), String> {
    values::redis_url(values::Raw::Env(url)).map(drop)
}

/// Whether a Redis URL carries a password (`redis://:secret@host`,
/// `redis://user:secret@host`).
pub fn url_has_password(url: &str) -> bool {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return false;
    };
    let rest = &url[scheme_end..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    authority
        .rfind('@')
        .and_then(|at| authority[..at].split_once(':'))
        .is_some_and(|(_, password)| !password.is_empty())
}

/// `redis://user:secret@host` -> `redis://user:***@host`.
fn redact_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    match (rest.find('@'), rest.find(':')) {
        (Some(at), Some(colon)) if colon < at => {
            format!(
                "{}{}:***{}",
                &url[..scheme_end],
                &rest[..colon],
                &rest[at..]
            )
        }
        _ => url.to_owned(),
    }
}

/// Settings being assembled, with where each scalar came from (for errors
/// that involve two settings) and the entries still waiting for their queue.
#[derive(Debug, Default)]
struct Draft {
    settings: Settings,
    set_by: BTreeMap<String, Origin>,
    entries: Vec<(String, entries::EntryDraft)>,
}

impl Draft {
    /// Records that `origin` set `key`.
    fn set_by(&mut self, key: &str, origin: &Origin) {
        self.set_by.insert(key.to_owned(), origin.clone());
    }

    /// Checks what involves several settings and fills in defaults that
    /// depend on other settings.
    fn finish(mut self) -> Result<Settings, SettingsError> {
        let s = &mut self.settings;
        if s.worker_heartbeat_timeout <= s.worker_heartbeat_freq {
            // Blame the timeout when it was set, else the frequency.
            let key = if self.set_by.contains_key("worker_heartbeat_timeout") {
                "worker_heartbeat_timeout"
            } else {
                "worker_heartbeat_freq"
            };
            return Err(SettingsError::BadValue {
                origin: self.set_by.get(key).cloned().unwrap_or(Origin::Text),
                key: key.to_owned(),
                problem: format!(
                    "worker_heartbeat_timeout ({} s) must be greater than worker_heartbeat_freq ({} s)",
                    s.worker_heartbeat_timeout, s.worker_heartbeat_freq
                ),
            });
        }
        for (id, draft) in self.entries {
            let mut entry = draft.entry;
            if !draft.queue_given {
                entry.queue = s.scheduler_queue.clone();
            }
            s.schedule.insert(id, entry);
        }
        Ok(self.settings)
    }
}

#[cfg(test)]
mod tests;
