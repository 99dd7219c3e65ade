//! The task side of redis-tasks: what runs inside a worker process.
//!
//! # Layout
//!
//! - [`registry`]: task functions registered by name, with typed arguments
//!   and options (`reentrant`, `timeout`).
//! - `async_task` (feature `async`): async task functions on a Tokio
//!   current-thread runtime, one per worker process.
//! - [`context`]: [`TaskContext`], what a running task can see and do (its
//!   id, its meta object, whether a shutdown was requested, the
//!   postpone-shutdown guard).
//! - [`child`]: [`Child`], a task a running task enqueues through its
//!   supervisor, now or when it finishes.
//! - [`middleware`]: the [`Middleware`] trait, the `run_task` chain that wraps
//!   a task here, and the `process_outcome` pass the supervisor runs.
//! - [`setup`]: the per-process setup hook and the state it hands tasks.
//! - [`shutdown`]: how a shutdown request reaches a running task and when it
//!   takes effect.
//! - [`process`]: the worker-process loop: handshake, read a task, run the
//!   chain under `catch_unwind`, report the result.
//! - [`fork_server`]: forks ready worker processes without `exec`, for a
//!   fresh process per task.
//! - [`panic`](mod@panic): the panic hook that keeps a panic's message and location.
//! - [`confine`]: Landlock and seccomp, applied by an isolated worker
//!   process to itself before any task runs.
//! - `sys`: the one module with `unsafe`: taking over the inherited socket,
//!   and the SIGSYS handler that names a call seccomp blocked.

#[cfg(feature = "async")]
pub mod async_task;
pub mod child;
pub mod confine;
pub mod context;
pub mod fork_server;
pub mod middleware;
pub mod panic;
pub mod process;
pub mod registry;
pub mod setup;
pub mod shutdown;
mod sys;
#[cfg(feature = "opentelemetry")]
mod trace_context;

pub use child::{Child, EnqueueError};
pub use context::{MetaSink, TaskContext};
pub use middleware::{Middleware, MiddlewareChain, MiddlewareError, Next};
pub use registry::{TaskDef, TaskError, TaskOptions, TaskRegistry};
pub use setup::{SetupHook, SetupState};
pub use shutdown::{PostponeShutdown, ShutdownState, Trigger};

/// Writes `text` and a newline to stderr and ignores a failure. A worker
/// process shares the supervisor's stderr; when that is a pipe whose reader
/// went away, `eprintln!` would panic (and abort, inside the panic hook).
pub(crate) fn stderr_line(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}
