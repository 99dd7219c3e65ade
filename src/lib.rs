//! redis-tasks: Redis-backed background tasks, each run in an isolated
//! worker process under a supervisor, so that a task that panics, crashes,
//! leaks or hangs still ends with a recorded outcome.
//!
//! # Layout
//!
//! - [`App`] (`app/`): the builder a user's binary starts from: tasks,
//!   middleware, and `.main()`, which is the command line, the supervisor
//!   (`worker`) or a worker process, as started.
//! - [`cli`]: the admin subcommands (`info`, `enqueue`, `task`, `failed`,
//!   `empty`, `schedule`, `graph`, `dashboard`), shared by the `redis-tasks` binary and users'
//!   binaries.
//! - [`graph`]: task graphs: the [`Graph`] builder and the
//!   [`GraphMiddleware`] that moves them on.
//! - [`testing`]: run queued tasks in-process from a test suite.
//! - Re-exports: the producer API ([`Store`], [`Queue`]; with the feature
//!   `async`, `AsyncStore` and `AsyncQueue` for Tokio services) from the
//!   store crate, [`Settings`] from the config crate, the model from the protocol
//!   crate; the task side ([`TaskContext`], [`Middleware`]) from
//!   the worker crate; the supervisor crate as [`supervisor`].

mod app;
pub mod cli;
pub mod graph;
mod logging;
pub mod testing;

pub use app::{App, CheckedEnqueueError, WorkerArgs, started_as_worker_process};
pub use graph::{EnqueuedGraph, FailurePolicy, Graph, GraphError, GraphMiddleware};
pub use logging::{LogFormat, init as init_logging};
pub use redis_tasks_config as config;
pub use redis_tasks_config::Settings;
pub use redis_tasks_config::settings::Isolation;
pub use redis_tasks_protocol as protocol;
pub use redis_tasks_protocol::{Attempt, Jitter, RetryOn, RetryPolicy};
pub use redis_tasks_protocol::{ExitReason, Failure, FailureKind, Outcome, TaskRecord, TaskStatus};
pub use redis_tasks_store as store;
#[cfg(feature = "async")]
pub use redis_tasks_store::{AsyncQueue, AsyncStore};
pub use redis_tasks_store::{CancelResult, EnqueueOptions, Enqueued};
pub use redis_tasks_store::{Queue, Store, StoreError};
pub use redis_tasks_supervisor as supervisor;
pub use redis_tasks_worker::{
    Child, EnqueueError, Middleware, Next, PostponeShutdown, TaskContext, TaskError, TaskOptions,
};
