//! The Redis schema: every key name, every Lua script, and every operation
//! producers and supervisors perform on Redis.
//!
//! Nothing outside this module spells a key. The layout is described for
//! other languages in `docs/redis-schema.md`; keep the two in step.
//!
//! # Layout
//!
//! - [`Store`] (this file): the public handle. It routes: each public
//!   method is one line from `route` that picks the part(s), plus a call
//!   on them. `route` alone decides which part does an operation.
//! - `part`: `Part`, one partition's keys and connections (one connection
//!   to Redis with timeouts, reopened after a drop). The topic modules
//!   below hold, next to the `Store` method, the `Part` method doing that
//!   partition's work.
//! - `connection`: [`RedisConfig`], how every program reaches Redis (TLS,
//!   ACL user, password file, Sentinel, the durable `WAIT` mode).
//! - `keys`: the key names. `scripts`: the Lua scripts. `record`: reading a
//!   task hash into a [`TaskRecord`](redis_tasks_protocol::model::TaskRecord).
//! - `calls`: the producer's requests (enqueue, cancel, read, wait)
//!   built without a connection, and their replies read; the sync parts
//!   and the async producer both send what it builds.
//! - `asynchronous` (feature `async`): `AsyncStore` and `AsyncQueue`, the
//!   producer operations as futures on Tokio over one multiplexed
//!   connection, routed like [`Store`].
//! - Producer operations: `producer`: [`Queue`] and enqueueing;
//!   `enqueue_options`: [`EnqueueOptions`] (delay, timeout, retry and
//!   uniqueness key of one call). `delayed`: the delayed set (promotion of
//!   due tasks, retries) and cancel requests of running tasks. `tasks`:
//!   reading, canceling and annotating tasks. `results`: waiting for a
//!   task's end and result. `progress`: progress reports. `unique`: stale
//!   uniqueness keys.
//! - Slot operations: `slots`: worker-slot registration and heartbeats.
//!   `fetch`: taking a task into a slot and recording its end. `conclude`:
//!   one call for every ending of a fetched task ([`Ending`]), which picks
//!   the script. `maintenance`: locks, dead slots, expiry.
//! - Admin views: `registry`: the finished, failed, expired and canceled
//!   registries. `admin`: counts, queue lengths, deleting a failed or
//!   canceled task. `preview`: clipped
//!   records. `layout`: partition and key names for programs reading Redis.
//!   `history`: the per-minute counts of endings the ending scripts keep,
//!   with run time and queue wait percentiles.
//! - `schedule`: the scheduler's last run per entry and its fenced,
//!   exactly-once enqueue; pausing, resuming and "run now" of an entry.
//!   `supervisors`: what running supervisors report about themselves,
//!   and the commands (quiet, stop, scale) sent to them. `graph`: task graphs (store, start, advance,
//!   show). `schema`: the format marker.
//!
//! # Atomicity
//!
//! Every state change is one Lua script (or one command), so a task id is at
//! every instant in exactly one place: a queue, a slot's private list, a
//! registry, or gone. Scripts check the type of every key they write before
//! writing anything, so bad data under our prefix yields
//! [`StoreError::WrongType`] with nothing changed.
//!
//! # Connections
//!
//! Each part holds one lazily opened connection for quick commands and a
//! second one for [`Store::fetch`], whose blocking wait needs a read timeout
//! longer than the wait (on a Cluster, one such pair per master, shared by
//! the parts on it: `nodes`). A connection that fails with an I/O error or
//! a timeout is dropped and reopened by the next call; the failed call
//! returns the error and is not retried (the caller decides, since a write
//! may or may not have happened). Use [`Store::independent`] to get a store
//! with connections of its own, for another thread.
//!
//! # Partitions
//!
//! On a Cluster (or with `redis_partitions` above 1) the data is split into
//! hash-tagged partitions (`partition`; see docs/redis.md), a `Part` each;
//! otherwise there is exactly one part, whose prefix is the plain prefix.
//! The routing kinds (`route`): by queue, uniqueness key or graph id
//! (`home`); every part, results merged (`each`, `merged_range`); the part
//! holding a task record (`locate`, `find`); each part until one holds a
//! slot's task (`fenced`); a fetched task's [`Lease`] (`by_lease`, and
//! [`Store::leased`], a store pinned to that partition); partition 0 for the
//! scheduler, locks and supervisor records (`zero`).

mod admin;
#[cfg(feature = "async")]
mod asynchronous;
mod calls;
mod children;
mod conclude;
mod connection;
mod delayed;
mod enqueue_options;
mod error;
mod fetch;
mod filter;
mod flow;
mod graph;
mod history;
mod keys;
mod layout;
mod maintenance;
mod nodes;
mod output;
mod part;
mod partition;
mod preview;
mod producer;
mod progress;
mod record;
mod registry;
mod results;
mod route;
mod scan;
mod schedule;
mod schema;
mod scripts;
mod slots;
mod supervisors;
mod tasks;
#[cfg(feature = "opentelemetry")]
mod trace_context;
mod unique;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use part::{Options, Part};
use std::time::Duration;

use redis::{Connection, RedisError};

#[cfg(feature = "async")]
pub use asynchronous::{AsyncQueue, AsyncStore};
pub use children::HeldChild;
pub use conclude::Ending;
pub use connection::{
    RedisConfig, WaitPolicy, check_secret_file, reload_password_files, secret_file_problem,
};
pub use delayed::{CancelResult, Promoted};
pub use enqueue_options::{EnqueueOptions, Enqueued};
pub use error::{StoreError, redact_url};
pub use fetch::{ExpiredTask, Fetched, Lease, MAX_EXPIRED_NOTES};
pub use filter::{IdSearch, TaskFilter};
pub use flow::{Limit, QueueFlow, QueueState, Rate, RateError, TaskFlow};
pub use graph::{
    Advance, FailurePolicy, GRAPH_META_KEY, GraphError, GraphPlan, GraphState, NodeState,
    NodeStatus, PlannedNode,
};
pub use history::{BUCKETS, HISTORY_SPAN, Histogram, MinuteStats, bucket_middle};
pub use maintenance::Reclaimed;
pub use preview::{Clipped, MAX_FIELDS, TaskPreview};
pub use producer::Queue;
pub use registry::{Registry, RegistryKind, Rejected, RequeueReport};
pub use scan::{BadCursor, FILTER_WINDOW, Listing, Scan, ScanCursor, ScanLimits};
pub use schedule::{RunResult, SCHEDULER_LOCK, ScheduleControl, ScheduledRun};
pub use schema::SCHEMA_MARKER;
pub use slots::{Incarnation, ProcessIdentity, SlotInfo, WorkerInfo};
pub use supervisors::{MAX_SLOTS, SupervisorCommand, SupervisorState};

pub use keys::Keys;

use redis_tasks_config::Settings;

/// The default limit on the JSON text of one task's arguments: 1 MiB.
pub const DEFAULT_MAX_ARGS_BYTES: u64 = 1024 * 1024;

/// The default of `max_task_timeout`: 7 days, in seconds.
pub const DEFAULT_MAX_TASK_TIMEOUT_SECS: u64 = 7 * 24 * 3600;
/// The default time a canceled task's record is kept: 7 days.
pub const DEFAULT_REGISTRY_TTL_SECS: u64 = 604_800;
/// How long opening a connection may take before it is an error.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one command may wait for its reply before it is an error.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A handle on the task store in one Redis server, under one key prefix.
///
/// Methods take `&self`; a mutex serialises commands on the connection, so a
/// `Store` can be shared between threads (a blocking [`fetch`](Store::fetch)
/// uses a connection of its own and does not hold up other calls).
pub struct Store {
    /// How Redis is reached, aimed at partition 0.
    config: RedisConfig,
    addr: String,
    /// The prefix as configured (`redis_prefix`).
    base_prefix: String,
    opts: Options,
    /// Set once the layout marker was checked (shared by the parts and
    /// independent copies).
    layout: Arc<OnceLock<()>>,
    /// On a Cluster: the slot map and the connections by master, shared
    /// by the parts.
    nodes: Option<Arc<nodes::Nodes>>,
    /// The partitions, by index: at least one (`route` picks among them).
    parts: Vec<Arc<Part>>,
    /// On partitioned data: a store pinned to each partition (one part,
    /// shared with this store), for [`Store::leased`].
    pinned: Vec<Store>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("addr", &self.addr)
            .field("prefix", &self.parts[0].keys().prefix())
            .field("max_args_bytes", &self.opts.max_args_bytes)
            .field("registry_ttl", &self.opts.registry_ttl)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// A store for the Redis server at `url` (`redis://[:password@]host[:port][/db]`),
    /// with keys under `prefix`. No connection is made until the first call.
    pub fn open(url: &str, prefix: &str) -> Result<Store, StoreError> {
        Store::open_with_password(url, None, prefix)
    }

    /// Like [`Store::open`], with `password` (when given) taking the place
    /// of any password in `url`.
    pub fn open_with_password(
        url: &str,
        password: Option<&str>,
        prefix: &str,
    ) -> Result<Store, StoreError> {
        Store::with_config(RedisConfig::from_url(url, password)?, prefix)
    }

    /// A store reaching Redis as `config` says (TLS, ACL user, Sentinel,
    /// durable mode), with keys under `prefix`. No connection is made until
    /// the first call.
    pub fn with_config(config: RedisConfig, prefix: &str) -> Result<Store, StoreError> {
        if prefix.is_empty() {
            return Err(StoreError::InvalidName {
                what: "key prefix",
                name: String::new(),
                reason: "it is empty",
            });
        }
        let count = config.partitions();
        if (count > 1 || config.is_cluster()) && prefix.contains(['{', '}']) {
            return Err(StoreError::InvalidName {
                what: "key prefix",
                name: prefix.to_owned(),
                reason: "it holds `{` or `}`, which would change the hash tags of partitioned keys",
            });
        }
        let addr = config.shown().to_owned();
        let first = partition::prefix(prefix, 0, count, config.is_cluster());
        let mut store = Store {
            config: config.for_slot(partition::key_slot(&first)),
            addr,
            base_prefix: prefix.to_owned(),
            opts: Options {
                max_args_bytes: DEFAULT_MAX_ARGS_BYTES,
                max_result_bytes: DEFAULT_MAX_ARGS_BYTES,
                max_task_timeout: DEFAULT_MAX_TASK_TIMEOUT_SECS,
                registry_ttl: DEFAULT_REGISTRY_TTL_SECS,
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                io_timeout: DEFAULT_IO_TIMEOUT,
            },
            layout: Arc::new(OnceLock::new()),
            nodes: config.is_cluster().then(Arc::default),
            parts: Vec::new(),
            pinned: Vec::new(),
        };
        store.build_parts();
        Ok(store)
    }

    /// A store configured from settings: `redis_url`, `redis_password_file`,
    /// the `redis_*` connection settings (see [`RedisConfig::from_settings`]),
    /// `redis_prefix`, `max_args_bytes`, `max_result_bytes`,
    /// `max_task_timeout` and `expiring_registries_ttl`.
    pub fn from_settings(settings: &Settings) -> Result<Store, StoreError> {
        Ok(Store::with_config(
            RedisConfig::from_settings(settings)?,
            &settings.redis_prefix,
        )?
        .with_max_args_bytes(settings.max_args_bytes)
        .with_max_result_bytes(settings.max_result_bytes)
        .with_max_task_timeout(settings.max_task_timeout)
        .with_registry_ttl(settings.expiring_registries_ttl))
    }

    /// How this store reaches Redis.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Sets the limit on the JSON text of one task's arguments.
    pub fn with_max_args_bytes(mut self, limit: u64) -> Store {
        self.opts.max_args_bytes = limit;
        self.build_parts();
        self
    }

    /// Sets the limit on a task's stored result (the fetch script refuses
    /// a record whose `result` is larger).
    pub fn with_max_result_bytes(mut self, limit: u64) -> Store {
        self.opts.max_result_bytes = limit;
        self.build_parts();
        self
    }

    /// Sets the longest per-task timeout an enqueue may ask for, in
    /// seconds (longer ones are refused, naming `max_task_timeout`).
    pub fn with_max_task_timeout(mut self, secs: u64) -> Store {
        self.opts.max_task_timeout = secs;
        self.build_parts();
        self
    }

    /// Sets how long (seconds) a canceled task's record is kept.
    pub fn with_registry_ttl(mut self, secs: u64) -> Store {
        self.opts.registry_ttl = secs;
        self.build_parts();
        self
    }

    /// Sets the connect timeout and the per-command reply timeout.
    pub fn with_timeouts(mut self, connect: Duration, io: Duration) -> Store {
        self.opts.connect_timeout = connect;
        self.opts.io_timeout = io;
        self.build_parts();
        self
    }

    /// Another store on the same server, prefix and options, with connections
    /// of its own (for another thread, since [`fetch`](Store::fetch) blocks).
    pub fn independent(&self) -> Result<Store, StoreError> {
        let mut store = Store {
            config: self.config.clone(),
            addr: self.addr.clone(),
            base_prefix: self.base_prefix.clone(),
            opts: self.opts,
            layout: Arc::clone(&self.layout),
            nodes: self.nodes.as_ref().map(|_| Arc::default()),
            parts: Vec::new(),
            pinned: Vec::new(),
        };
        store.build_parts();
        Ok(store)
    }

    /// Builds (again) the parts, with fresh connections, after an option
    /// changed or for a new store: one per partition, and on partitioned
    /// data a store pinned to each.
    fn build_parts(&mut self) {
        let count = self.config.partitions().max(1);
        let config = &self.config;
        self.parts = (0..count)
            .map(|index| {
                Arc::new(Part::new(
                    index,
                    count,
                    config,
                    &self.base_prefix,
                    &self.layout,
                    self.nodes.as_ref(),
                    self.opts,
                ))
            })
            .collect();
        self.pinned = if count > 1 {
            self.parts
                .iter()
                .map(|part| Store {
                    config: part.config().clone(),
                    addr: self.addr.clone(),
                    base_prefix: self.base_prefix.clone(),
                    opts: self.opts,
                    layout: Arc::clone(&self.layout),
                    nodes: self.nodes.clone(),
                    parts: vec![Arc::clone(part)],
                    pinned: Vec::new(),
                })
                .collect()
        } else {
            Vec::new()
        };
    }

    /// The key prefix (`redis_prefix`); partitioned data lives under
    /// `prefix:{tag}` (docs/redis.md).
    pub fn prefix(&self) -> &str {
        &self.base_prefix
    }

    /// How many partitions the data is split into (1 outside a Cluster
    /// unless `redis_partitions` says otherwise).
    pub fn partition_count(&self) -> usize {
        self.parts.len()
    }

    /// The server address (`host:port`), safe to show.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The limit on the JSON text of one task's arguments.
    pub fn max_args_bytes(&self) -> u64 {
        self.opts.max_args_bytes
    }

    /// The longest per-task timeout an enqueue may ask for, in seconds.
    pub fn max_task_timeout(&self) -> u64 {
        self.opts.max_task_timeout
    }

    /// Checks that Redis answers.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.zero().ping()
    }
}

/// Reads `<key> <found> <expected>` (followed by Redis's note on the script)
/// from the detail of a script's `RTWRONGTYPE` error.
fn parse_script_wrongtype(detail: &str) -> Option<StoreError> {
    let head = detail.split(" script: ").next().unwrap_or(detail).trim();
    let mut parts = head.rsplitn(3, ' ');
    let expected = parts.next()?;
    let found = parts.next()?;
    let key = parts.next()?;
    Some(StoreError::WrongType {
        key: key.to_owned(),
        expected: expected.to_owned(),
        found: found.to_owned(),
    })
}

/// Locks a connection slot; a panic in another holder only loses that
/// connection, which is dropped and reopened.
fn lock(m: &Mutex<Option<Connection>>) -> MutexGuard<'_, Option<Connection>> {
    m.lock().unwrap_or_else(|poisoned: PoisonError<_>| {
        let mut guard = poisoned.into_inner();
        *guard = None;
        guard
    })
}

/// Turns the replies of a pipeline run with `ignore_errors` into values,
/// returning the first server error as an error.
pub(crate) fn replies(values: Vec<redis::Value>) -> Result<Vec<redis::Value>, RedisError> {
    values
        .into_iter()
        .map(|v| match v {
            redis::Value::ServerError(e) => Err(RedisError::from(e)),
            other => Ok(other),
        })
        .collect()
}

/// The first line of `path`, without its line ending.
pub(crate) fn read_password(path: &std::path::Path) -> Result<String, StoreError> {
    let failed = |error| StoreError::PasswordFile {
        path: path.to_path_buf(),
        error,
    };
    let text = std::fs::read_to_string(path).map_err(failed)?;
    let password = text.lines().next().unwrap_or_default().to_owned();
    if password.is_empty() {
        return Err(failed(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file is empty",
        )));
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_type_errors_name_the_key() {
        let e = parse_script_wrongtype(
            "rt:queue:my q string list script: 6b6ee44b5b76, on @user_script:1.",
        );
        match e {
            Some(StoreError::WrongType {
                key,
                expected,
                found,
            }) => {
                assert_eq!(key, "rt:queue:my q");
                assert_eq!(found, "string");
                assert_eq!(expected, "list");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_bad_url_is_refused_without_its_password() {
        let err = Store::open("redis://u:hunter2@[bad", "rt").expect_err("bad url");
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(Store::open("redis://127.0.0.1:1", "").is_err());
    }
}
